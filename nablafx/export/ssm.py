"""S4's state-space layers in block form with operators fixed at export.

Eagerly, :class:`~nablafx.models.s4.DiagonalSSM` streams a block of ``n`` samples as one
product with the exact block matrix ``M_n`` (see its ``block_recurrence``) and caches
``M_n`` while no parameter changes. A trace cannot keep that cache: the traced graph
rebuilds ``M_n`` (``(n + 2N)^2`` values per channel) on every call, which made exported S4
slower than eager PyTorch. An exported model's weights never change, so :class:`BlockSSM`
computes the operators once, at export, for chunks of ``CHUNK`` samples, and runs any
block as whole chunks (one product with ``M_P`` each) plus one shorter chunk, whose matrix
is assembled from slices of the same operators:

- the input-to-output Toeplitz part and the state-to-output rows of ``M_n`` are the
  leading ``n`` rows/columns of those of ``M_P`` (they depend on the lag only);
- the input-to-state columns are the last ``n`` of ``M_P``'s (``dB dA^(n-1-j)``);
- the state rotation is ``dA^n``, kept for every ``n <= P``.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from nablafx.models.s4 import DiagonalSSM

#: Samples per chunk (the eager model's block matrix is used up to 128).
CHUNK = 64


class BlockSSM(nn.Module):
    """Scripted stand-in for a :class:`DiagonalSSM` in an exported model (same call and state)."""

    def __init__(self, original: DiagonalSSM, chunk: int = CHUNK):
        super().__init__()
        self.chunk = chunk
        self.channels: int = original.channels
        self.state_size: int = original.state_size
        with torch.no_grad():
            dtype = original.D.dtype
            full = original._block_matrix(chunk, dtype).transpose(1, 2)  # M_P, (H, P + 2N, P + 2N)
            ops = original._operators(chunk, dtype, use_cache=False)
        P = chunk
        self.register_buffer("full_transposed", full.transpose(1, 2).contiguous())
        self.register_buffer("to_output", full[:, :P, :].contiguous())  # [T + D I, O]
        self.register_buffer("input_to_state", full[:, P:, :P].contiguous())  # R
        self.register_buffer("powers", ops["dA_powers"].detach().clone())  # dA^k, (H, N, P + 1) complex

    def short_chunk(self, n: int) -> Tensor:
        """``M_n^T`` for ``n < P`` from slices of the chunk operators (see module docstring)."""
        P, N = self.chunk, self.state_size
        keep = torch.cat([torch.arange(n), torch.arange(P, P + 2 * N)])
        to_output = self.to_output[:, :n].index_select(2, keep)  # (H, n, n + 2N)
        a = self.powers[:, :, n]
        rotation = torch.cat([
            torch.cat([torch.diag_embed(a.real), -torch.diag_embed(a.imag)], dim=-1),
            torch.cat([torch.diag_embed(a.imag), torch.diag_embed(a.real)], dim=-1),
        ], dim=-2)
        to_state = torch.cat([self.input_to_state[:, :, P - n :], rotation], dim=-1)  # (H, 2N, n + 2N)
        return torch.cat([to_output, to_state], dim=1).transpose(1, 2)

    def forward(self, u: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        batch, length = u.shape[0], u.shape[2]
        N = self.state_size
        if state is None:
            s = torch.zeros(self.channels, batch, 2 * N, dtype=u.dtype)
        else:  # (batch, H, N, 2) -> [Re s; Im s] per channel, (H, batch, 2N)
            s = state.transpose(-1, -2).reshape(batch, self.channels, 2 * N).transpose(0, 1)
        signal = u.transpose(0, 1)  # (H, batch, L)
        outputs: List[Tensor] = []
        for start in range(0, length, self.chunk):
            piece = signal[:, :, start : start + self.chunk]
            n = piece.shape[2]
            matrix = self.full_transposed if n == self.chunk else self.short_chunk(n)
            z = torch.bmm(torch.cat([piece, s], dim=-1), matrix)  # (H, batch, n + 2N)
            outputs.append(z[:, :, :n])
            s = z[:, :, n:]
        y = torch.cat(outputs, dim=-1) if len(outputs) > 0 else signal
        new_state = s.transpose(0, 1).reshape(batch, self.channels, 2, N).transpose(-1, -2)
        return y.transpose(0, 1), new_state
