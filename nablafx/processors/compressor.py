"""Differentiable feed-forward compressor (see :mod:`nablafx.dsp.dynamics` for the formulas)."""

from __future__ import annotations

from torch import Tensor

from nablafx.core import State
from nablafx.dsp.dynamics import compress
from nablafx.processors.base import ParamSpec, Processor


class Compressor(Processor):
    """Threshold, ratio, knee, attack, release and make-up gain; state = smoothed gain reduction.

    Default ranges: threshold -60..0 dB, ratio 1..20 (log), knee 0..24 dB, attack
    0.1..100 ms (log), release 10..1000 ms (log), make-up 0..24 dB.
    """

    def __init__(self, sample_rate: float = 48000, threshold_db: list = (-60.0, 0.0), ratio: list = (1.0, 20.0),
                 knee_db: list = (0.0, 24.0), attack_ms: list = (0.1, 100.0), release_ms: list = (10.0, 1000.0),
                 makeup_db: list = (0.0, 24.0)):
        super().__init__()
        self.sample_rate = float(sample_rate)
        self.param_specs = (
            ParamSpec("threshold_db", *threshold_db, "dB", "linear"),
            ParamSpec("ratio", *ratio, "", "log"),
            ParamSpec("knee_db", *knee_db, "dB", "linear"),
            ParamSpec("attack_ms", *attack_ms, "ms", "log"),
            ParamSpec("release_ms", *release_ms, "ms", "log"),
            ParamSpec("makeup_db", *makeup_db, "dB", "linear"),
        )

    @property
    def receptive_field(self) -> int:
        return 0

    def process(self, x: Tensor, values: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        return compress(x, **values, sample_rate=self.sample_rate, state=state)
