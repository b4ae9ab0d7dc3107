"""Recursive (time-domain) biquad filtering with exact state: the streaming path.

Direct form I per section:

    y[n] = b0[n] x[n] + b1[n] x[n-1] + b2[n] x[n-2] - a1[n] y[n-1] - a2[n] y[n-2]

Direct form I keeps *signal* history (two inputs, two outputs) as state, which stays
meaningful when the coefficients change from one sample to the next; a transposed form
would carry coefficient-dependent partial sums and click under modulation. The
recursion runs in :func:`nablafx.dsp.recursion.iir_filter`. Nothing is ever clamped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nablafx.dsp.recursion import iir_filter
from nablafx.errors import ConfigError


def biquad_filter(x: Tensor, b: Tensor, a: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Filter ``x`` through a cascade of biquad sections, carrying state across calls.

    Args:
        x: audio ``(batch, channels, time)``.
        b, a: coefficients ``(batch or 1, sections, time or 1, 3)`` with ``a[..., 0] == 1``;
            a time axis of 1 means static coefficients, otherwise one set per sample; a
            batch of 1 is shared by every batch item.
        state: ``(batch, channels, sections, 4)`` holding ``[x[-2], x[-1], y[-2], y[-1]]``
            of every section; None = silence.

    Returns:
        ``(y, state)``: output ``(batch, channels, time)`` and the new state.
    """
    batch, channels, length = x.shape
    sections = b.shape[1]
    if b.shape != a.shape or b.dim() != 4 or b.shape[-1] != 3 or b.shape[2] not in (1, length) \
            or b.shape[0] not in (1, batch):
        raise ConfigError(
            f"biquad coefficients must be (batch={batch} or 1, sections, time={length} or 1, 3), "
            f"got b {tuple(b.shape)}, a {tuple(a.shape)}"
        )
    b, a = b.expand(batch, -1, -1, -1), a.expand(batch, -1, -1, -1)
    if state is None:
        state = x.new_zeros(batch, channels, sections, 4)

    def per_channel(coefficients: Tensor) -> Tensor:  # (batch, time|1, n) -> (batch * channels, n, time|1)
        c = coefficients.transpose(-1, -2).unsqueeze(1).expand(batch, channels, -1, -1)
        return c.reshape(batch * channels, *c.shape[2:])

    new_state = []
    for s in range(sections):
        x_hist, y_hist = state[:, :, s, :2], state[:, :, s, 2:]
        y = iir_filter(
            x.reshape(batch * channels, length),
            per_channel(b[:, s]),
            per_channel(a[:, s, :, 1:]),
            x_hist.flip(-1).reshape(batch * channels, 2).to(x.dtype),
            y_hist.flip(-1).reshape(batch * channels, 2).to(x.dtype),
        ).reshape(batch, channels, length)
        # The last two samples of history + signal (blocks may be shorter than two samples).
        new_state.append(torch.cat([torch.cat([x_hist, x], -1)[..., -2:], torch.cat([y_hist, y], -1)[..., -2:]], -1))
        x = y
    return x, torch.stack(new_state, dim=2)
