"""Gray-box chains in a form a trace can hold, and fast: block-form biquads, scripted control.

A gray-box chain streams through three things a trace cannot record as they are:

- its IIR recursions run in numba, outside torch. Time-varying ones (dynamic controllers
  on filters, the compressor's ballistics) switch to TorchScript loops by themselves when
  traced (:func:`nablafx.dsp.recursion.iir_filter_scripted`,
  :func:`nablafx.dsp.dynamics.smooth_gain_scripted`). Static biquad cascades -- every EQ
  and filter of the published chains -- get :class:`BlockBiquadCascade` here: a per-sample
  loop in the TorchScript interpreter costs ~3 us per sample and section, too slow for a
  plugin, while the block form below costs a few matrix products per 64 samples;
- :class:`~nablafx.controllers.DynamicController` decides in Python how many control
  blocks a chunk completes; :class:`ScriptedDynamicController` does the same in
  TorchScript, with the stream position in tensors;
- both start from ``state=None``; exported models start from all-zero state tensors, so
  the scripted controller treats ``started == 0`` as the start of a stream.

Block form of a biquad cascade. Each section is the state-space system
``s[n+1] = A s[n] + B x[n]``, ``y[n] = C s[n] + D x[n]`` on ``s = [x[n-1], x[n-2],
y[n-1], y[n-2]]`` (direct form I, as :func:`nablafx.dsp.iir.biquad_filter`), and the
cascade is their series connection. Over a chunk of ``P`` samples, with ``h`` the impulse
response (``h[0] = D``, ``h[k] = C A^(k-1) B``)::

    y[n]  = sum_{m<=n} h[n-m] x[m] + C A^n s[0]          (n < P)
    s[P]  = A^P s[0] + sum_m A^(P-1-m) B x[m]

one matrix product of ``[[T, O], [G, A^P]]`` with ``[x; s]`` per chunk, exact for any
poles (no truncated tail: the state carries it). The operators depend on the
coefficients only; the kernel keeps them for the last coefficients it saw, so a static
EQ builds them once per stream (knob-conditioned ones again when the knobs move).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from nablafx.controllers import DynamicController
from nablafx.dsp.interpolation import upsample_controls
from nablafx.processors.biquads import BiquadCascade
from nablafx.processors.nonlinearities import MLPNonlinearity

#: Samples per block-form chunk: the cost per sample grows with it (the Toeplitz part), the
#: number of interpreter calls per host buffer shrinks.
CHUNK = 64


@torch.jit.script
def cascade_state_space(b: Tensor, a: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(A, B, C, D)`` of a biquad cascade, float64.

    ``b``, ``a``: ``(batch, sections, 3)`` with ``a[..., 0] == 1``. Returns ``A`` ``(batch, S, S)``,
    ``B``, ``C`` ``(batch, S)`` and ``D`` ``(batch,)`` with ``S = 4 sections``, the state of
    section ``i`` at ``4i .. 4i+3`` as ``[x[n-1], x[n-2], y[n-1], y[n-2]]``.
    """
    b, a = b.double(), a.double()
    batch, sections = b.shape[0], b.shape[1]
    A = torch.zeros(batch, 0, 0, dtype=torch.float64)
    B = torch.zeros(batch, 0, dtype=torch.float64)
    C = torch.zeros(batch, 0, dtype=torch.float64)
    D = torch.ones(batch, dtype=torch.float64)
    for i in range(sections):
        c_i = torch.stack([b[:, i, 1], b[:, i, 2], -a[:, i, 1], -a[:, i, 2]], dim=1)
        d_i = b[:, i, 0]
        a_i = torch.zeros(batch, 4, 4, dtype=torch.float64)
        a_i[:, 1, 0] = 1.0
        a_i[:, 2] = c_i
        a_i[:, 3, 2] = 1.0
        b_i = torch.zeros(batch, 4, dtype=torch.float64)
        b_i[:, 0] = 1.0
        b_i[:, 2] = d_i
        # Series connection: this section's input is the cascade's output so far, C s + D x.
        size = A.shape[1]
        top = torch.cat([A, torch.zeros(batch, size, 4, dtype=torch.float64)], dim=2)
        bottom = torch.cat([b_i.unsqueeze(2) * C.unsqueeze(1), a_i], dim=2)
        A = torch.cat([top, bottom], dim=1)
        B = torch.cat([B, b_i * D.unsqueeze(1)], dim=1)
        C = torch.cat([d_i.unsqueeze(1) * C, c_i], dim=1)
        D = d_i * D
    return A, B, C, D


@torch.jit.script
def chunk_operators(A: Tensor, B: Tensor, C: Tensor, D: Tensor, chunk: int
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Operators of the block form for chunks of up to ``chunk`` samples (see module docstring).

    Returns ``(full, toeplitz, observe, drive, powers)``: ``full`` ``(batch, P+S, P+S)`` maps
    ``[x; s]`` of a whole chunk to ``[y; s']``; the others serve a shorter last chunk:
    ``toeplitz`` ``(batch, P, P)``, ``observe[n] = C A^n``, ``drive[k] = A^k B`` ``(batch, P, S)``,
    ``powers[k] = A^k`` ``(batch, P+1, S, S)``.
    """
    batch, size = A.shape[0], A.shape[1]
    powers = torch.eye(size, dtype=torch.float64).expand(batch, 1, size, size)
    step = A
    while powers.shape[1] <= chunk:  # doubling: A^0..A^(2k-1) from A^0..A^(k-1) and A^k
        powers = torch.cat([powers, torch.matmul(powers, step.unsqueeze(1))], dim=1)
        step = torch.matmul(step, step)
    powers = powers[:, : chunk + 1]
    observe = torch.matmul(C.reshape(batch, 1, 1, size), powers[:, :chunk]).squeeze(2)
    drive = torch.matmul(powers[:, :chunk], B.reshape(batch, 1, size, 1)).squeeze(3)
    impulse = torch.cat([D.unsqueeze(1), torch.matmul(observe[:, : chunk - 1], B.unsqueeze(2)).squeeze(2)], dim=1)
    lag = torch.arange(chunk).unsqueeze(1) - torch.arange(chunk).unsqueeze(0)
    toeplitz = impulse[:, lag.clamp_min(0)] * (lag >= 0).to(torch.float64)
    full = torch.cat([
        torch.cat([toeplitz, observe], dim=2),
        torch.cat([drive.flip(1).transpose(1, 2), powers[:, chunk]], dim=2),
    ], dim=1)
    return full, toeplitz, observe, drive, powers


class BlockBiquadCascade(nn.Module):
    """Static biquad cascade in block form (scripted; see module docstring).

    ``forward(x, b, a, state)`` takes and returns what :func:`nablafx.dsp.iir.biquad_filter`
    does -- ``x`` ``(batch, channels, time)``, ``b``/``a`` ``(batch or 1, sections, 1, 3)``,
    ``state`` ``(batch, channels, sections, 4)`` as ``[x[-2], x[-1], y[-2], y[-1]]`` -- and the
    same output up to float64 rounding.
    """

    def __init__(self, chunk: int = CHUNK):
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
    """``controls -> (b, a)`` of a biquad cascade (traced at export, see :class:`CachedBiquadCascade`)."""

    def __init__(self, processor: BiquadCascade):
        super().__init__()
        self.processor = processor

    def forward(self, controls: Tensor) -> tuple[Tensor, Tensor]:
        return self.processor.coefficients(self.processor.denormalize(controls))


class CachedBiquadCascade(nn.Module):
    """A biquad cascade's processing for controls constant in time: coefficients computed only
    when the controls change (for knob-conditioned EQs: when a knob moves), then the block form.

    Computing RBJ coefficients from controls is ~200 small tensor operations per call -- most
    of an exported knob-conditioned chain's cost at 64-sample blocks -- for values that only
    change with the knobs.
    """

    def __init__(self, processor: BiquadCascade):
        super().__init__()
        example = torch.full((1, processor.num_params, 1), 0.5)
        with torch.no_grad():
            self.coefficients = torch.jit.trace(CoefficientsOf(processor), (example,), check_trace=False)
        self.cascade = BlockBiquadCascade()
        empty = torch.zeros(0)
        self.key, self.b, self.a = empty, empty, empty

    def forward(self, x: Tensor, controls: Tensor, state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        if not (self.key.shape == controls.shape and torch.equal(self.key, controls)):
            self.b, self.a = self.coefficients(controls)
            self.key = controls.clone()
        return self.cascade(x, self.b, self.a, state)


class TableNonlinearity(nn.Module):
    """The SIREN nonlinearity's lookup (:class:`~nablafx.processors.MLPNonlinearity`) with its
    table computed once, over ``[-limit, limit]`` (scripted).

    The eager lookup sizes its grid ``k * lookup_step`` from ``x.min()`` / ``x.max()`` through
    Python ints, which a trace records as constants: a traced chain would keep the grid of the
    trace signal and extrapolate its edge segments for anything louder. Sizing the grid per call
    in tensors would trace, but would rerun the network on ~2,000 points per block. So the table
    is fixed here on the same absolute grid (identical values), and samples beyond ``limit`` get
    the network evaluated at the two grid points around them, as the eager lookup does: the same
    curve at any input level, at the network's cost only for those samples.
    """

    def __init__(self, processor: MLPNonlinearity, limit: float):
        super().__init__()
        self.siren = processor.siren
        self.input_range: float = processor.input_range
        self.step: float = float(processor.lookup_step)
        count = int(limit / self.step) + 1
        self.first: int = -count
        with torch.no_grad():
            grid = torch.arange(-count, count + 1, dtype=torch.float32) * self.step
            self.table = processor.network(grid).detach()

    def network(self, x: Tensor) -> Tensor:
        return self.siren((x / self.input_range).unsqueeze(-1)).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        table = self.table.to(x.dtype)
        position = x / self.step
        k = torch.floor(position)
        fraction = position - k
        index = k - self.first
        last = table.shape[0] - 2
        segment = index.clamp(0, last).long()
        low, high = table[segment], table[segment + 1]
        outside = (index < 0) | (index > last)
        if bool(outside.any()):
            beyond = k[outside]
            low = low.masked_scatter(outside, self.network(beyond * self.step))
            high = high.masked_scatter(outside, self.network((beyond + 1) * self.step))
        return low + (high - low) * fraction


DynamicState = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


class ScriptedDynamicController(nn.Module):
    """``DynamicController.forward`` in TorchScript (shares the original's LSTM and read-out).

    State: ``(peak, filled, h, c, previous, current, started)``; all zeros = start of a stream.
    """

    def __init__(self, original: DynamicController):
        super().__init__()
        self.block_size: int = original.block_size
        self.num_knobs: int = original.num_knobs
        self.interpolation: str = original.interpolation
        self.lstm = original.lstm
        self.readout = original.readout

    def forward(self, x: Tensor, knobs: Optional[Tensor], state: DynamicState) -> Tuple[Tensor, DynamicState]:
        peak, filled_t, h, c, previous, current, started = state
        if bool(started == 0):
            h, c = torch.zeros_like(h), torch.zeros_like(c)
            previous = torch.sigmoid(self.readout(h[0]))
            current = previous
            peak = torch.zeros_like(peak)
            filled = 0
        else:
            filled = int(filled_t)
        batch, length, n = x.shape[0], x.shape[2], self.block_size
        total = filled + length
        complete = total // n
        num_blocks = (total + n - 1) // n
        level = x.abs().amax(dim=1).to(peak.dtype)
        level = nn.functional.pad(level, [filled, num_blocks * n - total])
        block_peak = level.reshape(batch, num_blocks, n).amax(-1)
        block_peak = torch.cat([torch.maximum(block_peak[:, :1], peak.unsqueeze(-1)), block_peak[:, 1:]], dim=1)
        ends: List[Tensor] = [current.unsqueeze(1)]
        if complete > 0:
            features = block_peak[:, :complete].unsqueeze(-1)
            if knobs is not None and self.num_knobs > 0:
                features = torch.cat([features, knobs.to(features.dtype).unsqueeze(1).expand(-1, complete, -1)], -1)
            out, (h, c) = self.lstm(features, (h, c))
            ends.append(torch.sigmoid(self.readout(out)))
        end = torch.cat(ends, dim=1)
        start = torch.cat([previous.unsqueeze(1), end[:, :-1]], dim=1)
        controls = upsample_controls(start[:, :num_blocks].transpose(1, 2), end[:, :num_blocks].transpose(1, 2),
                                     n, self.interpolation)[..., filled:total]
        remainder = total % n
        new_peak = block_peak[:, complete] if remainder > 0 else torch.zeros_like(peak)
        new_state = (new_peak, torch.tensor(remainder, dtype=torch.int64), h, c, start[:, complete], end[:, complete],
                     torch.ones_like(started))
        return controls.to(x.dtype), new_state


class TraceableDynamicController(nn.Module):
    """Drop-in replacement of a ``DynamicController`` for tracing (same call, zero-start state)."""

    def __init__(self, original: DynamicController):
        super().__init__()
        self.num_knobs = original.num_knobs
        self.num_params = original.num_params
        self.hidden_size = original.lstm.hidden_size
        self.kernel = torch.jit.script(ScriptedDynamicController(original))

    def forward(self, x: Tensor, knobs: Tensor | None = None, state=None):
        if state is None:
            batch = x.shape[0]
            dtype = self.kernel.readout.weight.dtype
            zeros = x.new_zeros(1, batch, self.hidden_size, dtype=dtype)
            controls = x.new_zeros(batch, self.num_params, dtype=dtype)
            step = torch.zeros((), dtype=torch.int64)
            state = (x.new_zeros(batch, dtype=dtype), step, zeros, zeros, controls, controls, step)
        return self.kernel(x, knobs, state)
