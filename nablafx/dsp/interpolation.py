"""Control-rate to audio-rate interpolation, causal so that streaming works.

A control value ``c_j`` belongs to control block ``j`` (``block_size`` samples). Both
modes only use the current and the previous control value, never the next one:

- ``"hold"``: every sample of block j takes ``c_j``;
- ``"linear"``: sample ``i`` of block j takes ``c_{j-1} + (c_j - c_{j-1}) (i + 1) / block_size``,
  a ramp from the previous value that reaches ``c_j`` on the block's last sample.
"""

from __future__ import annotations

import torch
from torch import Tensor
from nablafx.errors import ConfigError

INTERPOLATIONS = ("hold", "linear")


def upsample_controls(previous: Tensor, current: Tensor, block_size: int, mode: str = "linear") -> Tensor:
    """Audio-rate controls from per-block start and end values.

    Args:
        previous: ``(batch, params, blocks)`` the value each block ramps from (``c_{j-1}``).
        current: ``(batch, params, blocks)`` the value each block reaches (``c_j``).
        block_size: samples per control block.
        mode: ``"hold"`` or ``"linear"``.

    Returns:
        ``(batch, params, blocks * block_size)``.
    """
    # Written in TorchScript's subset: exported dynamic controllers compile this function.
    if mode == "hold":
        return current.repeat_interleave(block_size, dim=-1)
    if mode != "linear":
        raise ConfigError("unknown interpolation '" + mode + "'; valid: hold, linear")
    ramp = torch.arange(1, block_size + 1, dtype=current.dtype, device=current.device) / block_size
    values = previous.unsqueeze(-1) + (current - previous).unsqueeze(-1) * ramp
    return values.flatten(-2)
