"""Processor base class: a DSP block driven by normalised controls.

A processor declares its parameters (:class:`ParamSpec`: name, range, unit, scale) and
is called as

    y, state = processor(x, controls, state)

with ``controls`` normalised to [0, 1], shaped ``(batch, n_params, 1)`` (static) or
``(batch, n_params, time)`` (time-varying, one value per sample). A batch of 1 is
shared by the whole batch: static controllers use it, so a filter's response is
computed once rather than once per batch item. Controls take the
place of the knobs in the shared calling convention: a processor's "knobs" are its
parameters. Blocks without parameters take ``controls=None``.

Linear time-invariant processors (filters, gain, polarity, FIR) also give their
frequency response for static controls. In training mode, with static controls shared by
the batch, they filter by frequency sampling (fast, differentiable, truncates the IIR
tail — see :mod:`nablafx.dsp.frequency`); in evaluation mode, with per-item or
time-varying controls, or with ``frequency_sampling = False`` they run the exact
recursive path, whose state carries across blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nablafx.core import State, StreamModule
from nablafx.dsp.frequency import fft_filter, frequency_sampling_size
from nablafx.dsp.mapping import check_range, denormalize, normalize
from nablafx.errors import ConfigError


@dataclass(frozen=True)
class ParamSpec:
    """One control parameter: ``minimum``..``maximum`` in ``unit``, mapped on ``scale``.

    ``default`` is the physical value controllers start from; None = the middle of the
    normalised range (0 dB for symmetric gain ranges, the geometric centre for Hz and Q).
    """

    name: str
    minimum: float
    maximum: float
    unit: str = ""
    scale: str = "linear"
    default: float | None = None

    def __post_init__(self):
        check_range(self.name, self.minimum, self.maximum, self.scale)
        if self.default is not None and not self.minimum <= self.default <= self.maximum:
            raise ConfigError(
                f"parameter {self.name!r}: default {self.default} outside [{self.minimum}, {self.maximum}]"
            )

    def denormalize(self, u: Tensor) -> Tensor:
        return denormalize(u, self.minimum, self.maximum, self.scale)

    def normalize(self, value: float) -> float:
        return float(normalize(torch.tensor(float(value), dtype=torch.float64), self.minimum, self.maximum, self.scale))

    @property
    def default_normalized(self) -> float:
        return 0.5 if self.default is None else self.normalize(self.default)


def neutral(minimum: float, maximum: float) -> float | None:
    """Default of a gain or offset: 0 (no change) when strictly inside the range, else None
    (the middle). Never a range end: a sigmoid controller starting there has no gradient."""
    return 0.0 if minimum < 0 < maximum else None


def frequency_param(name: str, hz_range, sample_rate: float, default: float | None = None) -> ParamSpec:
    """A frequency parameter on a log scale, checked against the Nyquist frequency."""
    low, high = (float(v) for v in hz_range)
    if high >= sample_rate / 2:
        raise ConfigError(
            f"parameter {name!r}: maximum {high} Hz is not below the Nyquist frequency "
            f"({sample_rate / 2} Hz at sample_rate={sample_rate})"
        )
    return ParamSpec(name, low, high, "Hz", "log", default)


class Processor(StreamModule):
    """Base of every processor; subclasses set ``param_specs`` and implement :meth:`process`.

    Attributes:
        param_specs: the declared parameters, in control-channel order.
        linear_time_invariant: True when the block is LTI for static controls; such a
            block implements :meth:`frequency_response`.
        frequency_sampling: use the frequency-sampling path in training mode (set by a
            chain from its own flag; turn off for truncated BPTT with carried state).
    """

    linear_time_invariant: bool = False
    frequency_sampling: bool = True

    def __init__(self):
        super().__init__()
        self.param_specs: tuple[ParamSpec, ...] = ()

    @property
    def num_params(self) -> int:
        return len(self.param_specs)

    def denormalize(self, controls: Tensor | None) -> dict[str, Tensor]:
        """Physical values ``{name: (batch, time|1)}`` from normalised controls."""
        if self.num_params == 0:
            return {}
        return {spec.name: spec.denormalize(controls[:, i]) for i, spec in enumerate(self.param_specs)}

    def check_controls(self, x: Tensor, controls: Tensor | None) -> None:
        if x.dim() != 3:
            raise ConfigError(f"{type(self).__name__} expects audio (batch, channels, time), got {tuple(x.shape)}")
        if self.num_params == 0:
            if controls is not None and controls.numel() > 0:
                raise ConfigError(f"{type(self).__name__} has no parameters but got controls {tuple(controls.shape)}")
            return
        if controls is None:
            names = ", ".join(spec.name for spec in self.param_specs)
            raise ConfigError(f"{type(self).__name__} needs controls for its parameters ({names})")
        if (
            controls.dim() != 3
            or controls.shape[0] not in (1, x.shape[0])
            or controls.shape[1] != self.num_params
            or controls.shape[2] not in (1, x.shape[-1])
        ):
            raise ConfigError(
                f"{type(self).__name__} expects controls (batch={x.shape[0]} or 1, {self.num_params}, 1 or "
                f"{x.shape[-1]}), got {tuple(controls.shape)}"
            )

    def uses_frequency_sampling(self, values: dict[str, Tensor]) -> bool:
        """Whether this call takes the training (frequency-sampling) path.

        Only for LTI blocks whose controls are static *and shared by the batch* (static
        controllers): their response is sampled once. Per-item responses (knob-conditioned
        controls) cost batch x sections x n_fft complex float64 values and their backward,
        more than the exact recursion on a CPU, so those run the recursive path.
        """
        return (
            self.training
            and self.frequency_sampling
            and self.linear_time_invariant
            and all(v.shape == (1, 1) for v in values.values())
        )

    def forward(self, x: Tensor, controls: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_controls(x, controls)
        values = self.denormalize(controls)
        if self.uses_frequency_sampling(values):
            if state is not None:
                raise ConfigError(
                    f"{type(self).__name__}: the frequency-sampling training path keeps no filter state; "
                    "set frequency_sampling = False to carry state while training (truncated BPTT)"
                )
            n_fft = frequency_sampling_size(x.shape[-1])
            return fft_filter(x, self.frequency_response(values, n_fft), n_fft), None
        return self.process(x, values, state)

    def process(self, x: Tensor, values: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        """Exact time-domain processing with physical ``values``; carries state."""
        raise NotImplementedError

    def frequency_response(self, values: dict[str, Tensor], n_fft: int) -> Tensor:
        """Complex response ``(batch or 1, n_fft // 2 + 1)`` for static ``values`` (LTI blocks only)."""
        raise NotImplementedError(f"{type(self).__name__} is not linear time-invariant")


def db_to_amplitude(gain_db: Tensor) -> Tensor:
    return 10 ** (gain_db / 20)


def constant_response(gain: Tensor, n_fft: int) -> Tensor:
    """The flat response of a scalar gain ``(batch, 1)`` on ``n_fft // 2 + 1`` bins."""
    return gain.to(torch.promote_types(gain.dtype, torch.complex64)).expand(gain.shape[0], n_fft // 2 + 1)
