"""RBJ cookbook biquad design from physical parameters, batched and differentiable.

All designers take tensors that broadcast together (e.g. ``(batch, time)`` for
time-varying parameters or ``(batch, 1)`` for static ones) and return ``(b, a)``,
each shaped ``(..., 3)`` and normalised so that ``a[..., 0] == 1``:

    H(z) = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2)

With ``w0 = 2 pi cutoff_hz / sample_rate``, ``alpha = sin(w0) / (2 q)`` and
``A = 10 ** (gain_db / 40)`` (R. Bristow-Johnson, "Cookbook formulae for audio EQ
biquad filter coefficients"; W3C Audio EQ Cookbook):

- lowpass:   b = [(1-c)/2, 1-c, (1-c)/2],          a = [1+alpha, -2c, 1-alpha]
- highpass:  b = [(1+c)/2, -(1+c), (1+c)/2],       a = [1+alpha, -2c, 1-alpha]
- peaking:   b = [1+alpha A, -2c, 1-alpha A],      a = [1+alpha/A, -2c, 1-alpha/A]
- lowshelf:  b = A[(A+1)-(A-1)c+2 sqrt(A) alpha, 2((A-1)-(A+1)c), (A+1)-(A-1)c-2 sqrt(A) alpha]
             a = [(A+1)+(A-1)c+2 sqrt(A) alpha, -2((A-1)+(A+1)c), (A+1)+(A-1)c-2 sqrt(A) alpha]
- highshelf: b = A[(A+1)+(A-1)c+2 sqrt(A) alpha, -2((A-1)+(A+1)c), (A+1)+(A-1)c-2 sqrt(A) alpha]
             a = [(A+1)-(A-1)c+2 sqrt(A) alpha, 2((A-1)-(A+1)c), (A+1)-(A-1)c-2 sqrt(A) alpha]

where ``c = cos(w0)``. Peaking gain at ``cutoff_hz`` is ``gain_db``; a low shelf has
gain ``gain_db`` at DC and 0 dB at Nyquist, a high shelf the reverse (exactly).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from nablafx.errors import ConfigError

# Filter kinds whose design uses gain_db.
GAIN_KINDS = ("peaking", "lowshelf", "highshelf")
KINDS = ("lowpass", "highpass") + GAIN_KINDS


def _lowpass(c, alpha, A):
    return ((1 - c) / 2, 1 - c, (1 - c) / 2), (1 + alpha, -2 * c, 1 - alpha)


def _highpass(c, alpha, A):
    return ((1 + c) / 2, -(1 + c), (1 + c) / 2), (1 + alpha, -2 * c, 1 - alpha)


def _peaking(c, alpha, A):
    return (1 + alpha * A, -2 * c, 1 - alpha * A), (1 + alpha / A, -2 * c, 1 - alpha / A)


def _lowshelf(c, alpha, A):
    k = 2 * A.sqrt() * alpha
    b = (A * ((A + 1) - (A - 1) * c + k), 2 * A * ((A - 1) - (A + 1) * c), A * ((A + 1) - (A - 1) * c - k))
    a = ((A + 1) + (A - 1) * c + k, -2 * ((A - 1) + (A + 1) * c), (A + 1) + (A - 1) * c - k)
    return b, a


def _highshelf(c, alpha, A):
    k = 2 * A.sqrt() * alpha
    b = (A * ((A + 1) + (A - 1) * c + k), -2 * A * ((A - 1) + (A + 1) * c), A * ((A + 1) + (A - 1) * c - k))
    a = ((A + 1) - (A - 1) * c + k, 2 * ((A - 1) - (A + 1) * c), (A + 1) - (A - 1) * c - k)
    return b, a


_DESIGNERS = {
    "lowpass": _lowpass,
    "highpass": _highpass,
    "peaking": _peaking,
    "lowshelf": _lowshelf,
    "highshelf": _highshelf,
}


def biquad_coefficients(
    kind: str, cutoff_hz: Tensor, q: Tensor, gain_db: Tensor | None, sample_rate: float
) -> tuple[Tensor, Tensor]:
    """Design an RBJ biquad; returns ``(b, a)`` shaped ``(..., 3)`` with ``a0 = 1``.

    ``gain_db`` is used by peaking and shelving filters and ignored (may be None) by
    low-/high-pass filters.
    """
    if kind not in _DESIGNERS:
        raise ConfigError(f"unknown biquad kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if gain_db is None:
        if kind in GAIN_KINDS:
            raise ConfigError(f"a {kind} biquad needs gain_db")
        gain_db = torch.zeros_like(cutoff_hz)
    w0 = 2 * math.pi * cutoff_hz / sample_rate
    c = w0.cos()
    alpha = w0.sin() / (2 * q)
    A = 10 ** (gain_db / 40)
    c, alpha, A = torch.broadcast_tensors(c, alpha, A)
    b, a = _DESIGNERS[kind](c, alpha, A)
    b, a = torch.stack(b, dim=-1), torch.stack(a, dim=-1)
    a0 = a[..., :1]
    return b / a0, a / a0
