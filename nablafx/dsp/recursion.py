"""Exact, differentiable, time-varying IIR filtering with state (the core of every recursive block).

Direct form I with per-sample coefficients:

    y[n] = sum_{m=0..M-1} b_m[n] x[n-m] - sum_{k=1..K} a_k[n] y[n-k]

with input history ``x[-1], ..., x[-(M-1)]`` and output history ``y[-1], ..., y[-K]``.
Coefficients may change every sample (time-varying filters, compressor ballistics) or
stay constant (a time axis of length 1).

Why a custom kernel: the recursion is inherently sequential, a per-sample Python loop
is far too slow, and ``torchaudio.functional.lfilter`` has neither initial conditions
nor time-varying coefficients. The loops run in numba (a project dependency) and the
backward pass is the same recursion run backwards in time (the adjoint filter, as in
torchlpc / Yu et al., "Differentiable all-pole filters for time-varying audio
systems", DAFx 2024). With ``g`` the total gradient w.r.t. ``y``:

    g[n]        = dL/dy[n] - sum_k a_k[n+k] g[n+k]
    dL/dx[n]    = sum_m b_m[n+m] g[n+m]
    dL/db_m[n]  = g[n] x[n-m]
    dL/da_k[n]  = -g[n] y[n-k]

(and the same sums for the histories, whose samples sit at negative times).

The recursion runs and keeps its output in float64 whatever the tensor dtype: storing
a low-frequency resonance's feedback in float32 injects rounding noise that the poles
amplify by their (large) noise gain. The result is returned in the input's dtype.
Tensors on an accelerator are processed on the host (the recursion offers no
parallelism over time to exploit).

Under ``torch.jit.trace`` (export) numba is out of reach of the graph, so the same
recursion (:func:`_direct_form_i`, written once) runs compiled by TorchScript instead
(:func:`iir_filter_scripted`, forward only). Static biquad cascades stream in block form
instead, eagerly and exported (:class:`nablafx.processors.biquads.StaticBiquadForm`), which
leaves this loop to time-varying coefficients.
"""

from __future__ import annotations

from typing import List

import numba
import numpy as np
import torch
from torch import Tensor
from nablafx.errors import ConfigError


def _direct_form_i(xs: List[float], ys: List[float], bs: List[List[float]], as_: List[List[float]],
                   length: int, step_b: int, step_a: int) -> None:
    """The recursion over one signal, in place, all in float64: ``xs`` holds the ``M - 1``
    input history samples then the input, ``ys`` the ``K`` output history samples then room for
    the output (oldest first); ``bs`` / ``as_`` are ``(M, time|1)`` / ``(K, time|1)``, read at
    column ``n * step``.

    Written once, in the subset that both numba (NumPy arrays, eager) and TorchScript (float
    lists, export) compile: nothing but indexing and float arithmetic per sample."""
    taps, order = len(bs), len(as_)
    for n in range(length):
        acc = 0.0
        for m in range(taps):
            acc += bs[m][n * step_b] * xs[taps - 1 + n - m]
        for k in range(1, order + 1):
            acc -= as_[k - 1][n * step_a] * ys[order + n - k]
        ys[order + n] = acc


_direct_form_i_numba = numba.njit(cache=True, nogil=True)(_direct_form_i)
_direct_form_i_scripted = torch.jit.script(_direct_form_i)


@numba.njit(cache=True, nogil=True)
def _iir_forward(x, b, a, x_init, y_init, y):
    """:func:`_direct_form_i` over a batch in numba, each row copied to float64 with its
    histories in front (one row at a time keeps the copies small)."""
    batch, length = x.shape
    taps, order = b.shape[1], a.shape[1]
    step_b = 1 if b.shape[2] > 1 else 0
    step_a = 1 if a.shape[2] > 1 else 0
    xs = np.empty(taps - 1 + length)
    ys = np.empty(order + length)
    for i in range(batch):
        for m in range(taps - 1):
            xs[m] = x_init[i, taps - 2 - m]
        xs[taps - 1 :] = x[i]
        for k in range(order):
            ys[k] = y_init[i, order - 1 - k]
        _direct_form_i_numba(xs, ys, b[i].astype(np.float64), a[i].astype(np.float64), length, step_b, step_a)
        y[i] = ys[order:]


@numba.njit(cache=True, nogil=True)
def _iir_backward(grad_y, x, b, a, x_init, y_init, y, g, grad_x, grad_b, grad_a, grad_x_init, grad_y_init):
    batch, length = x.shape
    taps, order = b.shape[1], a.shape[1]
    step_b = 1 if b.shape[2] > 1 else 0
    step_a = 1 if a.shape[2] > 1 else 0
    for i in range(batch):
        for n in range(length - 1, -1, -1):
            acc = np.float64(grad_y[i, n])
            for k in range(1, order + 1):
                if n + k < length:
                    acc -= np.float64(a[i, k - 1, (n + k) * step_a]) * g[i, n + k]
            g[i, n] = acc
        for n in range(length):
            acc = 0.0
            for m in range(taps):
                if n + m < length:
                    acc += np.float64(b[i, m, (n + m) * step_b]) * g[i, n + m]
            grad_x[i, n] = acc
        for n in range(length):
            gn = g[i, n]
            tb, ta = n * step_b, n * step_a
            for m in range(taps):
                if n >= m:
                    grad_b[i, m, tb] += gn * np.float64(x[i, n - m])
                else:
                    grad_b[i, m, tb] += gn * np.float64(x_init[i, m - n - 1])
                    grad_x_init[i, m - n - 1] += np.float64(b[i, m, tb]) * gn
            for k in range(1, order + 1):
                if n >= k:
                    grad_a[i, k - 1, ta] -= gn * y[i, n - k]
                else:
                    grad_a[i, k - 1, ta] -= gn * np.float64(y_init[i, k - n - 1])
                    grad_y_init[i, k - n - 1] -= np.float64(a[i, k - 1, ta]) * gn


def _host(t: Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


class _IIRFilter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, a, x_init, y_init):
        y64 = np.empty(x.shape, dtype=np.float64)
        _iir_forward(_host(x), _host(b), _host(a), _host(x_init), _host(y_init), y64)
        y64 = torch.from_numpy(y64)
        ctx.save_for_backward(x, b, a, x_init, y_init, y64)
        return y64.to(device=x.device, dtype=x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, b, a, x_init, y_init, y64 = ctx.saved_tensors
        grads = [np.zeros(t.shape, dtype=np.float64) for t in (x, b, a, x_init, y_init)]
        g = np.empty(x.shape, dtype=np.float64)
        _iir_backward(_host(grad_y), _host(x), _host(b), _host(a), _host(x_init), _host(y_init), y64.numpy(), g, *grads)
        return tuple(
            torch.from_numpy(grad).to(device=t.device, dtype=t.dtype) if t.requires_grad else None
            for grad, t in zip(grads, (x, b, a, x_init, y_init))
        )


@torch.jit.script
def iir_filter_scripted(x: Tensor, b: Tensor, a: Tensor, x_init: Tensor, y_init: Tensor) -> Tensor:
    """:func:`iir_filter` under TorchScript (same arguments, histories required, no gradient):
    the same per-signal recursion on float lists (the interpreter's cost per tensor operation
    would be paid for every sample otherwise)."""
    length, order = x.shape[1], a.shape[1]
    step_b = 1 if b.shape[2] > 1 else 0
    step_a = 1 if a.shape[2] > 1 else 0
    rows: List[Tensor] = []
    for i in range(x.shape[0]):
        xs: List[float] = torch.cat([x_init[i].flip(0), x[i]]).double().tolist()
        history: List[float] = y_init[i].flip(0).double().tolist()
        ys = history + [0.0] * length
        bs: List[List[float]] = b[i].double().tolist()
        as_: List[List[float]] = a[i].double().tolist()
        _direct_form_i_scripted(xs, ys, bs, as_, length, step_b, step_a)
        rows.append(torch.tensor(ys[order:], dtype=torch.float64))
    return torch.stack(rows).to(x.dtype)


def iir_filter(x: Tensor, b: Tensor, a: Tensor, x_init: Tensor | None = None,
               y_init: Tensor | None = None) -> Tensor:
    """Time-varying direct-form-I IIR filter with initial conditions. Never clamps.

    Args:
        x: input ``(batch, time)``.
        b: feed-forward coefficients ``b_0..b_{M-1}``, ``(batch, M, time)`` or ``(batch, M, 1)``.
        a: feedback coefficients ``a_1..a_K`` (``a_0 = 1`` implied), ``(batch, K, time|1)``.
        x_init: input history ``[x[-1], ..., x[-(M-1)]]``, ``(batch, M-1)``; None = silence.
        y_init: output history ``[y[-1], ..., y[-K]]``, ``(batch, K)``; None = silence.

    Returns:
        ``y`` ``(batch, time)`` in the dtype of ``x``.
    """
    batch, length = x.shape
    for name, coefficients in (("b", b), ("a", a)):
        if coefficients.dim() != 3 or coefficients.shape[0] != batch or coefficients.shape[2] not in (1, length):
            raise ConfigError(
                f"iir_filter: {name} must be (batch={batch}, n, time={length} or 1), got {tuple(coefficients.shape)}"
            )
    if x_init is None:
        x_init = x.new_zeros(batch, b.shape[1] - 1)
    if y_init is None:
        y_init = x.new_zeros(batch, a.shape[1])
    if torch.jit.is_tracing():
        return iir_filter_scripted(x, b, a, x_init, y_init)
    return _IIRFilter.apply(x, b, a, x_init, y_init)
