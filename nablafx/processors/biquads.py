"""Biquad filters and the parametric EQ: one configurable cascade of RBJ sections.

Each band is an RBJ biquad (:mod:`nablafx.dsp.biquad`) with its own cutoff, Q and, for
peaking and shelving bands, gain. Parameters are named ``cutoff_hz``/``q``/``gain_db``
for a single band and ``<band>_cutoff_hz`` etc. for several. The named classes
(:class:`ParametricEQ`, :class:`LowPass`, ...) only choose bands and default ranges.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nablafx.core import State
from nablafx.dsp.biquad import GAIN_KINDS, KINDS, biquad_coefficients
from nablafx.dsp.frequency import polynomial_response, product
from nablafx.dsp.iir import biquad_filter
from nablafx.processors.base import ParamSpec, Processor, frequency_param, neutral
from nablafx.errors import ConfigError

DEFAULT_Q_RANGE = (0.1, 10.0)
DEFAULT_GAIN_DB_RANGE = (-12.0, 12.0)


class BiquadCascade(Processor):
    """A cascade of RBJ biquads.

    Args:
        bands: one dict per section: ``kind`` (lowpass, highpass, peaking, lowshelf,
            highshelf), ``cutoff_hz`` range ``[min, max]``, optional ``q`` and
            ``gain_db`` ranges, optional ``name`` (needed when there are several bands)
            and optional ``defaults`` ``{"cutoff_hz": ..., "q": ..., "gain_db": ...}``.
        sample_rate: Hz; every cutoff range must lie below Nyquist.
    """

    linear_time_invariant = True

    def __init__(self, bands: list[dict], sample_rate: float = 48000):
        super().__init__()
        if not bands:
            raise ConfigError("BiquadCascade needs at least one band")
        self.sample_rate = float(sample_rate)
        self.kinds = []
        specs = []
        for i, band in enumerate(bands):
            kind = band.get("kind")
            if kind not in KINDS:
                raise ConfigError(f"band {i}: unknown biquad kind {kind!r}; valid kinds: {', '.join(KINDS)}")
            prefix = f"{band['name']}_" if len(bands) > 1 else ""
            defaults = band.get("defaults", {})
            specs.append(
                frequency_param(prefix + "cutoff_hz", band["cutoff_hz"], sample_rate, defaults.get("cutoff_hz"))
            )
            specs.append(ParamSpec(prefix + "q", *band.get("q", DEFAULT_Q_RANGE), "", "log", defaults.get("q")))
            if kind in GAIN_KINDS:
                low, high = band.get("gain_db", DEFAULT_GAIN_DB_RANGE)
                default = defaults.get("gain_db", neutral(low, high))
                specs.append(ParamSpec(prefix + "gain_db", low, high, "dB", "linear", default))
            self.kinds.append((kind, prefix))
        self.param_specs = tuple(specs)
        # Export swaps in a faster block form for controls constant in time
        # (nablafx.export.graybox.CachedBiquadCascade): (x, controls, state) -> (y, state).
        self.static_recursion: nn.Module | None = None

    @property
    def receptive_field(self) -> int:
        return 0  # recursive: unbounded memory

    def coefficients(self, values: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(b, a)`` shaped ``(batch, sections, time|1, 3)``, in float64.

        Float64 because low cutoffs put the poles within ~1e-3 of z = 1, where float32
        rounding of ``a1, a2`` moves the response by tenths of a dB (errors of ~5e-4 on
        a unit signal were measured at 23 Hz); the recursion then also runs in float64.
        """
        bs, as_ = [], []
        for kind, prefix in self.kinds:
            gain_db = values.get(prefix + "gain_db")
            b, a = biquad_coefficients(
                kind,
                values[prefix + "cutoff_hz"].double(),
                values[prefix + "q"].double(),
                None if gain_db is None else gain_db.double(),
                self.sample_rate,
            )
            bs.append(b)
            as_.append(a)
        return torch.stack(bs, dim=1), torch.stack(as_, dim=1)

    def process(self, x: Tensor, values: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        b, a = self.coefficients(values)
        return biquad_filter(x, b, a, state)

    def forward(self, x: Tensor, controls: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        if self.static_recursion is not None and not self.training and controls is not None \
                and controls.shape[-1] == 1:
            self.check_controls(x, controls)
            return self.static_recursion(x, controls, state)
        return super().forward(x, controls, state)

    def frequency_response(self, values: dict[str, Tensor], n_fft: int) -> Tensor:
        b, a = self.coefficients(values)
        # One complex division for the cascade: prod(B_s) / prod(A_s).
        numerator = product(list(polynomial_response(b[:, :, 0], n_fft).unbind(1)))
        response = numerator / product(list(polynomial_response(a[:, :, 0], n_fft).unbind(1)))
        return response.to(torch.promote_types(values[self.param_specs[0].name].dtype, torch.complex64))


class ParametricEQ(BiquadCascade):
    """Five-band parametric EQ of the NablAFx chains (15 parameters).

    Low shelf 20-2000 Hz, peaking 20-200 / 200-2000 / 2000-12000 Hz, high shelf
    4-16 kHz; gains ``gain_db_range`` (+-12 dB), Q ``q_range`` (0.1-10).
    """

    def __init__(self, sample_rate: float = 48000, gain_db_range: list = DEFAULT_GAIN_DB_RANGE,
                 q_range: list = DEFAULT_Q_RANGE):
        bands = [
            ("low_shelf", "lowshelf", (20.0, 2000.0)),
            ("band0", "peaking", (20.0, 200.0)),
            ("band1", "peaking", (200.0, 2000.0)),
            ("band2", "peaking", (2000.0, 12000.0)),
            ("high_shelf", "highshelf", (4000.0, 16000.0)),
        ]
        super().__init__(
            [{"name": n, "kind": k, "cutoff_hz": f, "q": q_range, "gain_db": gain_db_range} for n, k, f in bands],
            sample_rate,
        )


def _single_band(kind: str, cutoff_hz: list, q: list, gain_db: list | None, sample_rate: float,
                 defaults: dict | None) -> list[dict]:
    band = {"kind": kind, "cutoff_hz": cutoff_hz, "q": q, "defaults": defaults or {}}
    if gain_db is not None:
        band["gain_db"] = gain_db
    return [band]


class LowPass(BiquadCascade):
    """RBJ low-pass, cutoff 2-20 kHz by default (fixed at 20 kHz / Q 0.7 in the published chains)."""

    def __init__(self, sample_rate: float = 48000, cutoff_hz: list = (2000.0, 20000.0),
                 q: list = DEFAULT_Q_RANGE, defaults: dict | None = None):
        super().__init__(_single_band("lowpass", cutoff_hz, q, None, sample_rate, defaults), sample_rate)


class HighPass(BiquadCascade):
    """RBJ high-pass, cutoff 20-2000 Hz by default."""

    def __init__(self, sample_rate: float = 48000, cutoff_hz: list = (20.0, 2000.0),
                 q: list = DEFAULT_Q_RANGE, defaults: dict | None = None):
        super().__init__(_single_band("highpass", cutoff_hz, q, None, sample_rate, defaults), sample_rate)


class Peaking(BiquadCascade):
    """RBJ peaking EQ, 20 Hz-20 kHz, +-12 dB by default."""

    def __init__(self, sample_rate: float = 48000, cutoff_hz: list = (20.0, 20000.0),
                 q: list = DEFAULT_Q_RANGE, gain_db: list = DEFAULT_GAIN_DB_RANGE, defaults: dict | None = None):
        super().__init__(_single_band("peaking", cutoff_hz, q, gain_db, sample_rate, defaults), sample_rate)


class LowShelf(BiquadCascade):
    """RBJ low shelf, 20-2000 Hz, +-12 dB by default."""

    def __init__(self, sample_rate: float = 48000, cutoff_hz: list = (20.0, 2000.0),
                 q: list = DEFAULT_Q_RANGE, gain_db: list = DEFAULT_GAIN_DB_RANGE, defaults: dict | None = None):
        super().__init__(_single_band("lowshelf", cutoff_hz, q, gain_db, sample_rate, defaults), sample_rate)


class HighShelf(BiquadCascade):
    """RBJ high shelf, 4-16 kHz, +-12 dB by default."""

    def __init__(self, sample_rate: float = 48000, cutoff_hz: list = (4000.0, 16000.0),
                 q: list = DEFAULT_Q_RANGE, gain_db: list = DEFAULT_GAIN_DB_RANGE, defaults: dict | None = None):
        super().__init__(_single_band("highshelf", cutoff_hz, q, gain_db, sample_rate, defaults), sample_rate)
