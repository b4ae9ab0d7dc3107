"""Biquad cascades in block form: the streaming kernel for coefficients constant in time.

Block form of a biquad cascade. Each section is the state-space system
``s[n+1] = A s[n] + B x[n]``, ``y[n] = C s[n] + D x[n]`` on ``s = [x[n-1], x[n-2],
y[n-1], y[n-2]]`` (direct form I, as :func:`nablafx.dsp.iir.biquad_filter`), and the
cascade is their series connection. Over a chunk of ``P`` samples, with ``h`` the impulse
response (``h[0] = D``, ``h[k] = C A^(k-1) B``)::

    y[n]  = sum_{m<=n} h[n-m] x[m] + C A^n s[0]          (n < P)
    s[P]  = A^P s[0] + sum_m A^(P-1-m) B x[m]

one matrix product of ``[[T, O], [G, A^P]]`` with ``[x; s]`` per chunk, exact for any
poles (no truncated tail: the state carries it). The operators depend on the
coefficients only; :class:`~nablafx.processors.biquads.BlockBiquadCascade` keeps them for
the last coefficients it saw, so a static EQ builds them once per stream (knob-conditioned
ones again when the knobs move).

Written in TorchScript's subset: :class:`nablafx.processors.biquads.BlockBiquadCascade`
runs these eagerly and exported models run them compiled.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


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
