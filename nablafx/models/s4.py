"""S4 model: a stack of diagonal state-space (S4D) layers, with an FFT form and an exact recurrence.

Diagonal SSM per channel h (Gu et al., "On the parameterization and initialization of
diagonal state space models" (S4D), NeurIPS 2022), state size N, complex diagonal A::

    x'(t) = A x(t) + 1 u(t),      y(t) = 2 Re(C x(t)) + D u(t)

Zero-order hold with step dt (per channel) gives ``dA = exp(dt A)``, ``dB = (dA - 1) / A``::

    s_k = dA * s_{k-1} + dB * u_k,      y_k = 2 Re(sum_n C_n s_k,n) + D u_k        (recurrence)
    y_k = sum_m K_m u_{k-m} + 2 Re(sum_n C_n dA_n^{k+1} s_{-1,n}) + D u_k,
    K_m = 2 Re(sum_n C_n dB_n dA_n^m)                                               (convolution)

Both forms are exact and equal; the convolution (FFT) is used for inputs longer than
``MATRIX_MAX_LENGTH``, and shorter ones (streaming blocks) apply the recurrence to the
whole block as chunk matrix products (:meth:`DiagonalSSM.block_recurrence`, which exported
models run with the operators fixed); the tests check both against the per-sample
recurrence, written out in ``tests/dsp_references.py``. The
convolution form also carries the state: the initial state enters through the second term
and the final state is ``s_{L-1} = dA^L s_{-1} + dB sum_j dA^{L-1-j} u_j``, so streaming in
blocks of any size equals one call. Long inputs are convolved in chunks of ``CHUNK``
samples with the state handed over between them, which keeps the cost of the powers
``dA^l`` (H N per kernel tap) and their memory independent of the signal length (the
reference built them for the whole 3-s segment: ~600 MB per layer for S4-L).

Init (S4D-Lin): ``A_n = -0.5 + i pi n``, ``log dt ~ U(log 1e-3, log 1e-1)``, ``C ~ CN(0, 1)``,
``D ~ N(0, 1)``. Parameters per layer: dt (H), Re A (H N), Im A (H N), C (2 H N), D (H).
dt and A carry optimiser hints ``param._optim = {"lr": ssm_lr, "weight_decay": 0.0}``.

Block (NablAFx S4, arXiv 2502.14405)::

    h = tanh(Linear(H -> H)(x)) -> SSM -> modulate (optional) -> tanh;   out = h + W_res * x

Model: Linear(1 -> H) -> B blocks -> Linear(H -> 1) -> tanh. The per-sample linear maps
are 1x1 convolutions (same parameters as ``nn.Linear``, no transposes).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from nablafx.core import State
from nablafx.models.base import ConditionedNet
from nablafx.models.causal_conv import ChannelGain1d
from nablafx.models.conditioning import Conditioning, join_block_state, run_modulator, split_block_state
from nablafx.models.tcn import ConditioningName

MATRIX_MAX_LENGTH = 128  # inputs up to this length use the block recurrence (chunk matrix products)
BLOCK_CHUNK = 64  # samples per chunk matrix of the block recurrence
CHUNK = 2048  # the convolution form works in chunks of this many samples (see DiagonalSSM.convolution)


class DiagonalSSM(nn.Module):
    """``channels`` independent diagonal SSMs of ``state_size`` complex states each (see module doc).

    State: the complex state vector as real pairs, ``(batch, channels, state_size, 2)``.
    """

    def __init__(
        self,
        channels: int,
        state_size: int,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        ssm_lr: float | None = 1e-3,
    ):
        super().__init__()
        self.channels, self.state_size = channels, state_size
        self.ssm_lr = ssm_lr
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        # Re A = -exp(log_A_real) stays negative (stable) whatever the optimiser does
        self.log_A_real = nn.Parameter(torch.full((channels, state_size), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(state_size, dtype=torch.float32).repeat(channels, 1))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(channels, state_size, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(channels))
        self._tag_optimiser_hints()

    def _tag_optimiser_hints(self) -> None:
        """dt and A learn with their own rate and no weight decay (S4 practice: they set each
        state's decay and frequency, which weight decay would bias and the main rate would move
        too fast)."""
        hint = {"weight_decay": 0.0}
        if self.ssm_lr is not None:
            hint["lr"] = self.ssm_lr
        for p in (self.log_dt, self.log_A_real, self.A_imag):
            p._optim = dict(hint)

    def __setstate__(self, state):
        # copy.deepcopy / pickle rebuild Parameters without their attributes: tag them again
        super().__setstate__(state)
        self._tag_optimiser_hints()

    def _parameter_versions(self) -> tuple[int, ...]:
        """In-place updates (optimiser steps, ``load_state_dict``) bump these: cached operators go stale."""
        return (self.log_dt._version, self.log_A_real._version, self.A_imag._version, self.C._version, self.D._version)

    def discretize(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(dt A, dB, C)`` as complex ``(channels, state_size)`` tensors (zero-order hold, B = 1)."""
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dtA = A * torch.exp(self.log_dt).unsqueeze(-1)
        dB = torch.expm1(dtA) / A
        return dtA, dB, torch.view_as_complex(self.C)

    def forward(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if u.shape[-1] <= MATRIX_MAX_LENGTH:
            return self.block_recurrence(u, state)
        return self.convolution(u, state)

    def _operators(self, length: int, dtype: torch.dtype, use_cache: bool = True) -> dict:
        """Kernel spectrum and state maps for chunks of ``length`` samples (cached for streaming).

        ``dA^l = exp(l Re(dt A)) (cos(l Im(dt A)) + i sin(l Im(dt A)))`` is built in real
        arithmetic (a complex exp is several times slower on CPU) and stacked as
        ``[Re; Im]`` over the state axis, so each state map is one batched matrix product.
        In inference (no autograd) the same chunk length repeats every call, so the result
        is kept until a parameter changes (tracked by the parameters' version counters).
        """
        cacheable = use_cache and not torch.is_grad_enabled()
        key = (length, dtype, self.log_dt.device, self._parameter_versions())
        cache = self.__dict__.get("_operator_cache")
        if cacheable and cache is not None and cache[0] == key:
            return cache[1]
        dtA, dB, C = self.discretize()
        steps = torch.arange(length + 1, device=dtA.device, dtype=dtype)
        magnitude = torch.exp(dtA.real.unsqueeze(-1) * steps)
        phase = dtA.imag.unsqueeze(-1) * steps
        powers_re, powers_im = magnitude * torch.cos(phase), magnitude * torch.sin(phase)  # (H, N, L + 1)
        CdB = C * dB
        kernel = 2 * (
            torch.einsum("hn,hnl->hl", CdB.real, powers_re[..., :length])
            - torch.einsum("hn,hnl->hl", CdB.imag, powers_im[..., :length])
        )
        ops = {
            "kernel": kernel,
            "kernel_f": torch.fft.rfft(kernel, n=2 * length),
            # 2 Re(w dA^{k+1}) = [Re w, Im w] . 2 [Re dA^{k+1}; -Im dA^{k+1}],  k = 0 .. L-1
            "response": 2 * torch.cat([powers_re[..., 1:], -powers_im[..., 1:]], dim=1),  # (H, 2N, L)
            # sum_j dA^{L-1-j} u_j: the powers in reverse time order, (H, L, 2N)
            "drive": torch.cat([powers_re[..., :length], powers_im[..., :length]], dim=1).flip(-1).transpose(1, 2),
            "dA_powers": torch.complex(powers_re, powers_im),  # dA^l for the state hand-over
            "dB": dB,
            "C": C,
        }
        if cacheable:
            self.__dict__["_operator_cache"] = (key, ops)
        return ops

    def convolution(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Chunked FFT convolution with the SSM kernel, the state handed over between chunks; exact.

        The input is cut into chunks of ``CHUNK`` samples. All whole chunks are convolved
        with the kernel at once (FFT); each chunk's own contribution to the state at its
        end is one batched product; a short scan over the chunks (a few dozen steps for 3 s)
        hands the state on, ``s_c = dA^T s_{c-1} + d_c``; and each chunk then adds the
        response to the state it started from. A shorter tail chunk uses prefixes of the
        same operators. The powers ``dA^l`` are only needed up to the chunk length.
        """
        batch, channels, length = u.shape
        chunk = min(length, CHUNK)
        count, tail = divmod(length, chunk)
        ops = self._operators(chunk, u.dtype)
        N = self.state_size
        whole, rest = u.split([count * chunk, tail], dim=-1)
        pieces = whole.reshape(batch, channels, count, chunk)
        y = torch.fft.irfft(torch.fft.rfft(pieces, n=2 * chunk) * ops["kernel_f"].unsqueeze(1), n=2 * chunk)
        y = y[..., :chunk] + self.D.view(-1, 1, 1) * pieces  # (B, H, count, chunk)

        per_channel = pieces.permute(1, 0, 2, 3).reshape(channels, batch * count, chunk)
        drive = torch.bmm(per_channel, ops["drive"])  # (H, B * count, 2N)
        drive = torch.complex(drive[..., :N], drive[..., N:]).reshape(channels, batch, count, N)
        drive = ops["dB"].unsqueeze(1).unsqueeze(1) * drive
        carried = torch.view_as_complex(state.contiguous()).transpose(0, 1) if state is not None else None
        starts = []  # state at the start of each chunk, (H, B, N)
        dA_chunk = ops["dA_powers"][..., chunk].unsqueeze(1)
        for c in range(count):
            starts.append(carried if carried is not None else drive.new_zeros(channels, batch, N))
            carried = drive[:, :, c] if carried is None else dA_chunk * carried + drive[:, :, c]
        weights = torch.stack(starts, dim=2) * ops["C"].unsqueeze(1).unsqueeze(1)  # (H, B, count, N)
        weights = torch.cat([weights.real, weights.imag], dim=-1).reshape(channels, batch * count, 2 * N)
        response = torch.bmm(weights, ops["response"]).reshape(channels, batch, count, chunk)
        y = (y + response.transpose(0, 1)).reshape(batch, channels, count * chunk)
        new_state = torch.view_as_real(carried.transpose(0, 1))
        if tail:
            y_tail, new_state = self._convolve_chunk(rest, new_state, ops, chunk)
            y = torch.cat([y, y_tail], dim=-1)
        return y, new_state

    def _convolve_chunk(self, u: Tensor, state: Tensor | None, ops: dict, chunk: int) -> tuple[Tensor, Tensor]:
        n = u.shape[-1]  # <= chunk; a shorter last chunk uses prefixes of the operators
        kernel_f = ops["kernel_f"] if n == chunk else torch.fft.rfft(ops["kernel"][:, :n], n=2 * n)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * n) * kernel_f, n=2 * n)[..., :n]
        y = y + self.D.unsqueeze(-1) * u
        per_channel = u.transpose(0, 1)  # (H, B, n)
        drive = torch.bmm(per_channel, ops["drive"][:, chunk - n :])  # (H, B, 2N)
        N = self.state_size
        new_state = ops["dB"] * torch.complex(drive[..., :N], drive[..., N:]).transpose(0, 1)
        if state is not None:
            s0 = torch.view_as_complex(state.contiguous())
            weights = s0 * ops["C"]
            weights = torch.cat([weights.real, weights.imag], dim=-1).transpose(0, 1)  # (H, B, 2N)
            y = y + torch.bmm(weights, ops["response"][..., :n]).transpose(0, 1)
            new_state = new_state + ops["dA_powers"][..., n] * s0
        return y, torch.view_as_real(new_state)

    def block_recurrence(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The recurrence over a block as matrix products: ``[y; s_new] = M [u; s]`` per chunk.

        For a chunk of n samples the SSM is an exact linear map of the input samples and the
        state (as real pairs ``[Re s; Im s]``)::

            M = [[T + D I, O],     T[k, j] = K_{k-j} (k >= j),   O[k] = 2 [Re, -Im](C dA^{k+1})
                 [R,       Q]]     R[:, j] = [Re; Im](dB dA^{n-1-j}),  Q = [[Re, -Im], [Im, Re]](dA^n)

        ``M`` costs ``(n + 2N)^2`` per channel, so blocks are cut into chunks of
        ``BLOCK_CHUNK`` samples (see :func:`apply_block_form`): with the per-sample work in
        one batched product, a 64-sample call is a handful of operations. Exported models run
        the same function with the operators fixed (:class:`FrozenBlockSSM`).
        """
        return apply_block_form(u, state, *self.block_operators(u.dtype), BLOCK_CHUNK)

    def block_operators(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """What :func:`apply_block_form` needs for chunks of ``P = BLOCK_CHUNK`` samples:
        ``M_P^T``, its output rows ``M_P[:P]``, its input-to-state block ``R`` and the powers
        ``dA^k`` (k <= P). Cached in inference until a parameter changes."""
        cacheable = not torch.is_grad_enabled()
        key = (dtype, self.log_dt.device, self._parameter_versions())
        cache = self.__dict__.get("_block_cache")
        if cacheable and cache is not None and cache[0] == key:
            return cache[1]
        P = BLOCK_CHUNK
        ops = self._operators(P, dtype, use_cache=False)
        full = self._block_matrix(P, ops)
        operators = (full.transpose(1, 2).contiguous(), full[:, :P, :], full[:, P:, :P], ops["dA_powers"])
        if cacheable:
            self.__dict__["_block_cache"] = (key, operators)
        return operators

    def _block_matrix(self, n: int, ops: dict) -> Tensor:
        """``M`` of :meth:`block_recurrence` for chunks of n samples, ``(H, n + 2N, n + 2N)``,
        from the operators of that length."""
        powers = ops["dA_powers"]  # (H, N, n + 1)
        lag = torch.arange(n, device=powers.device)
        lag = lag.unsqueeze(1) - lag.unsqueeze(0)  # k - j
        toeplitz = ops["kernel"][:, lag.clamp(min=0)] * (lag >= 0)
        toeplitz = toeplitz + torch.diag_embed(self.D.unsqueeze(-1).expand(-1, n))
        from_state = ops["C"].unsqueeze(-1) * powers[..., 1:]  # C dA^{k+1}, (H, N, n)
        from_state = 2 * torch.cat([from_state.real, -from_state.imag], dim=1).transpose(1, 2)  # (H, n, 2N)
        to_state = ops["dB"].unsqueeze(-1) * powers[..., :n].flip(-1)  # dB dA^{n-1-j}, (H, N, n)
        to_state = torch.cat([to_state.real, to_state.imag], dim=1)  # (H, 2N, n)
        a = powers[..., n]  # dA^n, (H, N)
        rotation = torch.cat(
            [torch.cat([torch.diag_embed(a.real), -torch.diag_embed(a.imag)], dim=-1),
             torch.cat([torch.diag_embed(a.imag), torch.diag_embed(a.real)], dim=-1)],
            dim=-2,
        )  # (H, 2N, 2N)
        return torch.cat([torch.cat([toeplitz, from_state], dim=-1), torch.cat([to_state, rotation], dim=-1)], dim=-2)


def short_chunk_matrix(to_output: Tensor, input_to_state: Tensor, powers: Tensor, n: int) -> Tensor:
    """``M_n^T`` for ``n`` below the chunk length ``P``, from slices of the chunk's operators.

    The input-to-output Toeplitz part and the state-to-output rows of ``M_n`` are the leading
    ``n`` rows/columns of those of ``M_P`` (they depend on the lag only); the input-to-state
    columns are the last ``n`` of ``M_P``'s (``dB dA^(n-1-j)``); the state rotation is ``dA^n``.
    """
    P, N = input_to_state.shape[2], input_to_state.shape[1] // 2
    keep = torch.cat([torch.arange(n), torch.arange(P, P + 2 * N)])
    from_input = to_output[:, :n].index_select(2, keep)  # (H, n, n + 2N)
    a = powers[:, :, n]
    rotation = torch.cat([
        torch.cat([torch.diag_embed(a.real), -torch.diag_embed(a.imag)], dim=-1),
        torch.cat([torch.diag_embed(a.imag), torch.diag_embed(a.real)], dim=-1),
    ], dim=-2)
    to_state = torch.cat([input_to_state[:, :, P - n :], rotation], dim=-1)  # (H, 2N, n + 2N)
    return torch.cat([from_input, to_state], dim=1).transpose(1, 2)


def apply_block_form(u: Tensor, state: Optional[Tensor], full_transposed: Tensor, to_output: Tensor,
                     input_to_state: Tensor, powers: Tensor, chunk: int) -> Tuple[Tensor, Tensor]:
    """The SSM on ``u`` ``(batch, H, L)`` from ``state`` ``(batch, H, N, 2)`` (None: rest), as
    whole chunks (one product with ``M_P`` each) plus one shorter chunk; exact.

    Written in TorchScript's subset: the eager layer and the exported one run this function.
    """
    batch, channels, length = u.shape[0], u.shape[1], u.shape[2]
    N = input_to_state.shape[1] // 2
    if state is None:
        s = torch.zeros(channels, batch, 2 * N, dtype=u.dtype, device=u.device)
    else:  # (batch, H, N, 2) -> [Re s; Im s] per channel, (H, batch, 2N)
        s = state.permute(1, 0, 3, 2).reshape(channels, batch, 2 * N)
    signal = u.transpose(0, 1)  # (H, batch, L); rows times M^T: on CPU faster than M times columns
    # Few operations per call: at streaming block sizes each costs more than its arithmetic.
    outputs: List[Tensor] = []
    for start in range(0, length, chunk):
        piece = signal if length <= chunk else signal[:, :, start : start + chunk]
        n = piece.shape[2]
        matrix = full_transposed if n == chunk else short_chunk_matrix(to_output, input_to_state, powers, n)
        z = torch.bmm(torch.cat([piece, s], dim=-1), matrix)  # (H, batch, n + 2N)
        outputs.append(z[:, :, :n])
        s = z[:, :, n:]
    if len(outputs) == 1:
        y = outputs[0]
    else:
        y = torch.cat(outputs, dim=-1) if len(outputs) > 0 else signal
    return y.transpose(0, 1), s.reshape(channels, batch, 2, N).permute(1, 0, 3, 2)


class FrozenBlockSSM(nn.Module):
    """A :class:`DiagonalSSM` for export: :func:`apply_block_form` with the operators computed
    once from the trained parameters (a trace would rebuild them on every call), scriptable."""

    def __init__(self, ssm: DiagonalSSM):
        super().__init__()
        self.chunk: int = BLOCK_CHUNK
        with torch.no_grad():
            operators = ssm.block_operators(ssm.D.dtype)
        for name, tensor in zip(("full_transposed", "to_output", "input_to_state", "powers"), operators):
            self.register_buffer(name, tensor.detach().clone().contiguous())

    def forward(self, u: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        return apply_block_form(u, state, self.full_transposed, self.to_output, self.input_to_state, self.powers,
                                self.chunk)


class S4Block(nn.Module):
    def __init__(self, channels: int, state_size: int, ssm_lr: float | None, conditioning: Conditioning):
        super().__init__()
        self.linear = nn.Conv1d(channels, channels, 1)
        self.ssm = DiagonalSSM(channels, state_size, ssm_lr=ssm_lr)
        self.modulation = conditioning.modulator(channels)
        self.residual = ChannelGain1d(channels, channels)

    def forward(self, x: Tensor, context, state) -> tuple[Tensor, State]:
        ssm_state, modulation_state = split_block_state(state, self.modulation)
        h, ssm_state = self.ssm(self.linear(x).tanh(), ssm_state)
        h, modulation_state = run_modulator(self.modulation, h, context, modulation_state)
        return h.tanh() + self.residual(x), join_block_state(ssm_state, modulation_state, self.modulation)


class S4(ConditionedNet):
    """Stack of S4D blocks (see module docstring); names ``s4-b<blocks>-s<state>-c<channels>``.

    Args:
        num_knobs, conditioning, control_block_size: as :class:`nablafx.models.TCN`.
        channels: H, width of every block.
        num_blocks: B.
        state_size: N, complex states per channel.
        ssm_lr: learning rate hint for dt and A (None: the optimiser's default).

    State layout as :class:`nablafx.models.TCN`; a block's own state is its SSM state.
    """

    def __init__(
        self,
        num_knobs: int = 0,
        channels: int = 16,
        num_blocks: int = 4,
        state_size: int = 4,
        conditioning: ConditioningName = "none",
        control_block_size: int = 128,
        ssm_lr: float | None = 1e-3,
    ):
        super().__init__()
        self._setup_conditioning(num_knobs, conditioning, control_block_size)
        self.expand = nn.Conv1d(1, channels, 1)
        self.blocks = nn.ModuleList(
            S4Block(channels, state_size, ssm_lr, self.conditioning) for _ in range(num_blocks)
        )
        self.contract = nn.Conv1d(channels, 1, 1)

    @property
    def receptive_field(self) -> int:
        return 0  # recurrent (infinite impulse response)

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_input(x, knobs)
        block_states, encoder_state = self.unpack_state(state, len(self.blocks))
        context, encoder_state = self.conditioning(x, knobs, encoder_state)
        h = self.expand(x)
        for n, block in enumerate(self.blocks):
            h, block_states[n] = block(h, context, block_states[n])
        return self.contract(h).tanh(), self.pack_state(block_states, encoder_state)
