"""Dynamic controllers: control values that follow the signal, per control block (suffix ``.d``/``.dc``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nablafx.controllers.base import Controller, logit
from nablafx.core import State
from nablafx.dsp.interpolation import INTERPOLATIONS, upsample_controls
from nablafx.errors import ConfigError


class DynamicController(Controller):
    """Peak envelope per control block -> LSTM -> linear read-out -> sigmoid, at audio rate.

    For control block ``j`` (``block_size`` samples) the LSTM has consumed the peak
    ``max |x|`` of blocks ``0..j-1`` (plus the knobs, for ``.dc``) and emits
    ``c_j = sigmoid(W h_j + b)``; ``c_0`` comes from the zero initial state. Samples of block
    ``j`` ramp from ``c_{j-1}`` to ``c_j`` (``interpolation="linear"``) or hold ``c_j``.
    So the control of a sample depends only on samples before its block: causal, no
    latency. The read-out bias starts at the logits of ``init``.

    State: ``(peak, filled, (h, c), previous, current)`` — the running peak and sample
    count of the partly filled block, the LSTM state and the block's start and end
    control values; any block size in streaming equals one call.

    Args:
        hidden_size: LSTM width; None = ``num_params`` (as in the published models).
    """

    def __init__(self, num_params: int, num_knobs: int = 0, init: list[float] | None = None,
                 block_size: int = 128, hidden_size: int | None = None, interpolation: str = "linear"):
        super().__init__(num_params, num_knobs, init)
        if block_size < 1:
            raise ConfigError(f"block_size must be >= 1, got {block_size}")
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
        self.block_size = block_size
        self.interpolation = interpolation
        hidden_size = num_params if hidden_size is None else hidden_size
        self.lstm = nn.LSTM(1 + num_knobs, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, num_params)
        with torch.no_grad():
            self.readout.bias.copy_(logit(self.init))

    @property
    def receptive_field(self) -> int:
        return 0

    def _controls(self, h: Tensor) -> Tensor:
        return torch.sigmoid(self.readout(h))

    def initial_state(self, x: Tensor) -> State:
        batch, hidden = x.shape[0], self.lstm.hidden_size
        dtype = self.readout.weight.dtype
        zeros = x.new_zeros(1, batch, hidden, dtype=dtype)
        first = self._controls(zeros[0])
        return (x.new_zeros(batch, dtype=dtype), torch.zeros((), dtype=torch.long), (zeros, zeros), first, first)

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_input(x, knobs)
        if state is None:
            state = self.initial_state(x)
        peak, filled, lstm_state, previous, current = state
        filled = int(filled)
        length, n = x.shape[-1], self.block_size
        total = filled + length
        complete = total // n
        num_blocks = -(-total // n)

        # Block peaks on a grid aligned with the control blocks: the partial block's
        # running peak stands in for the samples seen in earlier calls.
        level = x.abs().amax(dim=1).to(peak.dtype)
        level = nn.functional.pad(level, (filled, num_blocks * n - total))
        block_peak = level.reshape(x.shape[0], num_blocks, n).amax(-1)
        block_peak = torch.cat([torch.maximum(block_peak[:, :1], peak.unsqueeze(-1)), block_peak[:, 1:]], dim=1)

        ends = [current.unsqueeze(1)]
        if complete > 0:
            features = block_peak[:, :complete].unsqueeze(-1)
            if self.num_knobs:
                features = torch.cat([features, knobs.to(features.dtype).unsqueeze(1).expand(-1, complete, -1)], -1)
            h, lstm_state = self.lstm(features, lstm_state)
            ends.append(self._controls(h))
        ends = torch.cat(ends, dim=1)  # (batch, complete + 1, params): c for each block from here on
        starts = torch.cat([previous.unsqueeze(1), ends[:, :-1]], dim=1)
        controls = upsample_controls(
            starts[:, :num_blocks].transpose(1, 2), ends[:, :num_blocks].transpose(1, 2), n, self.interpolation
        )[..., filled:total]

        remainder = total % n
        new_peak = block_peak[:, complete] if remainder else torch.zeros_like(peak)
        new_state = (new_peak, torch.tensor(remainder), lstm_state, starts[:, complete], ends[:, complete])
        return controls.to(x.dtype), new_state
