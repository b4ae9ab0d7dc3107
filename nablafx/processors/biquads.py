"""Biquad filters and the parametric EQ: one configurable cascade of RBJ sections.

Each band is an RBJ biquad (:mod:`nablafx.dsp.biquad`) with its own cutoff, Q and, for
peaking and shelving bands, gain. Parameters are named ``cutoff_hz``/``q``/``gain_db``
for a single band and ``<band>_cutoff_hz`` etc. for several. The named classes
(:class:`ParametricEQ`, :class:`LowPass`, ...) only choose bands and default ranges.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from nablafx.core import State
from nablafx.dsp.biquad import GAIN_KINDS, KINDS, biquad_coefficients
from nablafx.dsp.biquad_block import cascade_state_space, chunk_operators
from nablafx.dsp.frequency import polynomial_response, product
from nablafx.dsp.iir import biquad_filter
from nablafx.processors.base import ParamSpec, Processor, frequency_param, neutral
from nablafx.errors import ConfigError

DEFAULT_Q_RANGE = (0.1, 10.0)
DEFAULT_GAIN_DB_RANGE = (-12.0, 12.0)
#: Samples per block-form chunk: the cost per sample grows with it (the Toeplitz part), the
#: number of calls per host buffer shrinks.
BLOCK_CHUNK = 64
#: Inference calls up to this length with controls constant in time run the block form
#: (streaming blocks); longer ones (whole files) the per-sample recursion, which is cheaper
#: per sample.
STATIC_FORM_MAX_LENGTH = 4096


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
        self.compiled_static_form: nn.Module | None = None  # set by compile_static_form (export)

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
        if self.uses_static_form(x, controls):
            self.check_controls(x, controls)
            return self.static_form()(x, controls, state)
        return super().forward(x, controls, state)

    def uses_static_form(self, x: Tensor, controls: Tensor | None) -> bool:
        """Inference on the CPU in streaming-sized blocks with controls constant in time (and every
        traced call of that kind, which export has compiled): :class:`StaticBiquadForm`."""
        if self.training or controls is None or controls.shape[-1] != 1:
            return False
        return torch.jit.is_tracing() or (not torch.is_grad_enabled() and x.shape[-1] <= STATIC_FORM_MAX_LENGTH
                                          and x.device.type == "cpu")

    def static_form(self) -> nn.Module:
        """The :class:`StaticBiquadForm` of this cascade: the compiled one of an export, else the
        eager one, made on first use and kept outside the module tree (it refers back to this
        module)."""
        if self.compiled_static_form is not None:
            return self.compiled_static_form
        form = self.__dict__.get("_static_form")
        if form is None:
            form = self.__dict__["_static_form"] = StaticBiquadForm(self)
        return form

    def compile_static_form(self) -> None:
        """For export: the static form compiled (the coefficient function traced, the rest
        scripted), registered as a submodule so a trace of the model can call it."""
        self.compiled_static_form = torch.jit.script(StaticBiquadForm(self, trace_coefficients=True))

    def frequency_response(self, values: dict[str, Tensor], n_fft: int) -> Tensor:
        b, a = self.coefficients(values)
        # One complex division for the cascade: prod(B_s) / prod(A_s).
        numerator = product(list(polynomial_response(b[:, :, 0], n_fft).unbind(1)))
        response = numerator / product(list(polynomial_response(a[:, :, 0], n_fft).unbind(1)))
        return response.to(torch.promote_types(values[self.param_specs[0].name].dtype, torch.complex64))


class BlockBiquadCascade(nn.Module):
    """Biquad cascade with coefficients constant in time, in block form (:mod:`nablafx.dsp.biquad_block`).

    ``forward(x, b, a, state)`` takes and returns what :func:`nablafx.dsp.iir.biquad_filter`
    does -- ``x`` ``(batch, channels, time)``, ``b``/``a`` ``(batch or 1, sections, 1, 3)``,
    ``state`` ``(batch, channels, sections, 4)`` as ``[x[-2], x[-1], y[-2], y[-1]]`` -- and the
    same output up to float64 rounding.
    """

    def __init__(self, chunk: int = BLOCK_CHUNK):
        super().__init__()
        self.chunk = chunk
        empty = torch.zeros(0, dtype=torch.float64)
        self.key_b, self.key_a = empty, empty
        self.full, self.toeplitz, self.observe, self.drive, self.powers = empty, empty, empty, empty, empty

    def operators(self, b: Tensor, a: Tensor) -> None:
        """Rebuild the chunk operators unless ``b``, ``a`` are the last ones seen."""
        if not (self.key_b.shape == b.shape and self.key_a.shape == a.shape
                and torch.equal(self.key_b, b) and torch.equal(self.key_a, a)):
            A, B, C, D = cascade_state_space(b[:, :, 0], a[:, :, 0])
            self.full, self.toeplitz, self.observe, self.drive, self.powers = chunk_operators(A, B, C, D, self.chunk)
            self.key_b, self.key_a = b.clone(), a.clone()

    def forward(self, x: Tensor, b: Tensor, a: Tensor, state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        batch, channels, length = x.shape[0], x.shape[1], x.shape[2]
        sections = b.shape[1]
        self.operators(b.double(), a.double())
        if state is None:
            state = torch.zeros(batch, channels, sections, 4, dtype=x.dtype)
        # [x[-2], x[-1], y[-2], y[-1]] <-> [x[n-1], x[n-2], y[n-1], y[n-2]]: a flip of each pair
        s = state.double().reshape(batch, channels, sections, 2, 2).flip(-1).reshape(batch * channels, sections * 4)
        signal = x.double().reshape(batch * channels, length)
        full, toeplitz, observe, powers, drive = self.full, self.toeplitz, self.observe, self.powers, self.drive
        if full.shape[0] != batch * channels:  # one row per (item, channel); coefficients per item or shared
            rows = torch.arange(batch * channels) // channels if full.shape[0] > 1 else torch.zeros(
                batch * channels, dtype=torch.int64)
            full, toeplitz, observe, powers, drive = full[rows], toeplitz[rows], observe[rows], powers[rows], drive[rows]
        outputs: List[Tensor] = []
        for start in range(0, length, self.chunk):
            piece = signal[:, start : start + self.chunk]
            n = piece.shape[1]
            if n == self.chunk:
                z = torch.matmul(full, torch.cat([piece, s], dim=1).unsqueeze(2)).squeeze(2)
                outputs.append(z[:, :n])
                s = z[:, n:]
            else:
                y = torch.matmul(toeplitz[:, :n, :n], piece.unsqueeze(2)) + torch.matmul(observe[:, :n], s.unsqueeze(2))
                s = (torch.matmul(powers[:, n], s.unsqueeze(2))
                     + torch.matmul(drive[:, :n].flip(1).transpose(1, 2), piece.unsqueeze(2))).squeeze(2)
                outputs.append(y.squeeze(2))
        y = torch.cat(outputs, dim=1) if len(outputs) > 0 else signal
        new_state = s.reshape(batch, channels, sections, 2, 2).flip(-1).reshape(batch, channels, sections, 4).to(state.dtype)
        return y.reshape(batch, channels, length).to(x.dtype), new_state


class CoefficientsOf(nn.Module):
    """``controls -> (b, a)`` of a biquad cascade."""

    def __init__(self, processor: BiquadCascade):
        super().__init__()
        self.processor = processor

    def forward(self, controls: Tensor) -> tuple[Tensor, Tensor]:
        return self.processor.coefficients(self.processor.denormalize(controls))


class StaticBiquadForm(nn.Module):
    """A biquad cascade's processing for controls constant in time: coefficients computed only
    when the controls change (for knob-conditioned EQs: when a knob moves), then the block form.

    Computing RBJ coefficients from controls takes some 200 small tensor operations, most of
    a gray-box chain's cost at streaming block sizes, for values that only change with the
    knobs. ``trace_coefficients`` traces that function (for export, which then scripts this
    module).
    """

    def __init__(self, processor: BiquadCascade, trace_coefficients: bool = False):
        super().__init__()
        coefficients = CoefficientsOf(processor)
        if trace_coefficients:
            example = torch.full((1, processor.num_params, 1), 0.5)
            with torch.no_grad():
                coefficients = torch.jit.trace(coefficients, (example,), check_trace=False)
        self.coefficients = coefficients
        self.cascade = BlockBiquadCascade()
        empty = torch.zeros(0)
        self.key, self.b, self.a = empty, empty, empty

    def forward(self, x: Tensor, controls: Tensor, state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        if not (self.key.shape == controls.shape and torch.equal(self.key, controls)):
            self.b, self.a = self.coefficients(controls)
            self.key = controls.clone()
        return self.cascade(x, self.b, self.a, state)


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
