"""Gain, DC offset and polarity inversion: the simplest processors of a gray-box chain."""

from __future__ import annotations

import torch
from torch import Tensor

from nablafx.core import State
from nablafx.processors.base import ParamSpec, Processor, constant_response, db_to_amplitude, neutral


class Gain(Processor):
    """``y = x * 10 ** (gain_db / 20)``; default range +-40 dB as in the published chains."""

    linear_time_invariant = True

    def __init__(self, min_db: float = -40.0, max_db: float = 40.0):
        super().__init__()
        self.param_specs = (ParamSpec("gain_db", min_db, max_db, "dB", "linear", neutral(min_db, max_db)),)

    def process(self, x: Tensor, values: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        return x * db_to_amplitude(values["gain_db"]).unsqueeze(1), None

    def frequency_response(self, values: dict[str, Tensor], n_fft: int) -> Tensor:
        return constant_response(db_to_amplitude(values["gain_db"]), n_fft)


class DCOffset(Processor):
    """``y = x + offset``; shifts the operating point of a following nonlinearity (asymmetric clipping)."""

    def __init__(self, min_offset: float = -2.0, max_offset: float = 2.0):
        super().__init__()
        self.param_specs = (ParamSpec("offset", min_offset, max_offset, "", "linear", neutral(min_offset, max_offset)),)

    def process(self, x: Tensor, values: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        return x + values["offset"].unsqueeze(1), None


class PolarityInversion(Processor):
    """``y = -x``. Placed before a nonlinearity so an inverted device need not be learned by it."""

    linear_time_invariant = True

    def __init__(self):
        super().__init__()
        # A buffer, so the response follows the module's dtype and device.
        self.register_buffer("sign", torch.tensor([[-1.0]]), persistent=False)

    def process(self, x: Tensor, values: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        return -x, None

    def frequency_response(self, values: dict[str, Tensor], n_fft: int) -> Tensor:
        return constant_response(self.sign, n_fft)
