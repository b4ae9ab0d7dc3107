"""A streaming runtime in Python: what a plugin host does with a model, block by block.

``StreamingRuntime(net, knobs)`` keeps the model's state between calls, so
``process(block)`` accepts blocks of any size (1, 64, 97, 4096 samples) and the
concatenated outputs equal one call on the whole signal. ``reset()`` returns to silence;
``latency`` is the model's delay in samples (0 for every causal nablafx model; streaming
itself adds none, since no block waits for more input).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from nablafx.errors import ConfigError


class StreamingRuntime:
    """Drive ``net`` (eval mode, no gradients) one host buffer at a time.

    Args:
        net: any nablafx model (``y, state = net(x, knobs, state)``).
        knobs: knob values in [0, 1] in the model's knob order; default 0.5 each.

    ``process`` takes ``(time,)`` or ``(channels, time)`` audio as a NumPy array or a
    tensor and returns the same type and shape; channels are independent streams (one
    state each). Knob values passed to ``process`` replace the current ones from that
    block on.
    """

    def __init__(self, net: nn.Module, knobs: Sequence[float] | Tensor | np.ndarray | None = None):
        self.net = net.eval()
        self.num_knobs = net.num_knobs
        self.knobs = self._knob_tensor([0.5] * self.num_knobs if knobs is None else knobs)
        self.state = None
        self.channels: int | None = None

    @property
    def latency(self) -> int:
        return int(self.net.latency)

    def reset(self) -> None:
        """Back to silence (the next block starts a new signal)."""
        self.state = None
        self.channels = None

    def _knob_tensor(self, knobs) -> Tensor:
        values = torch.as_tensor(np.asarray(knobs, dtype=np.float32)).reshape(-1)
        if values.numel() != self.num_knobs:
            raise ConfigError(f"the model has {self.num_knobs} knob(s), got {values.numel()} value(s)")
        if values.numel() and not bool(((values >= 0) & (values <= 1)).all()):
            raise ConfigError(f"knob values must lie in [0, 1], got {values.tolist()}")
        return values

    @torch.no_grad()
    def process(self, block, knobs: Sequence[float] | Tensor | np.ndarray | None = None):
        if knobs is not None:
            self.knobs = self._knob_tensor(knobs)
        is_numpy = isinstance(block, np.ndarray)
        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)) if is_numpy else block
        if x.dim() not in (1, 2):
            raise ConfigError(f"process expects (time,) or (channels, time) audio, got shape {tuple(x.shape)}")
        x3 = x.reshape(1 if x.dim() == 1 else x.shape[0], 1, x.shape[-1])
        if self.channels is not None and x3.shape[0] != self.channels:
            raise ConfigError(
                f"this stream has {self.channels} channel(s) but the block has {x3.shape[0]}; call reset() "
                "before changing the channel count"
            )
        if x3.shape[-1] == 0:
            return block
        knob_batch = self.knobs.to(x3).expand(x3.shape[0], -1) if self.num_knobs else None
        y, self.state = self.net(x3, knob_batch, self.state)
        self.channels = x3.shape[0]
        y = y.reshape(x.shape)
        return y.numpy() if is_numpy else y
