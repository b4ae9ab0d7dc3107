"""Dynamic controllers: control values that follow the signal, per control block (suffix ``.d``/``.dc``)."""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn

from nablafx.controllers.base import Controller, logit
from nablafx.core import State
from nablafx.dsp.interpolation import INTERPOLATIONS, upsample_controls
from nablafx.errors import ConfigError
from nablafx.controllers.block_rate import BlockRateLSTM, compiled_when_tracing


def ramp_controls(current: Tensor, previous: Tensor, position: Tensor, chunk: Tensor,
                  block_size: int, mode: str) -> Tuple[Tensor, Tensor]:
    """Audio-rate controls of a chunk from the values of the control blocks it touches.

    ``current`` ``(batch, params, S)``: the value each touched block reaches; ``previous``
    ``(batch, params)``: the value of the block before the first (ignored at the start of a
    stream: block 0 holds its own value). ``position``: the block-rate state's ``[offset,
    started]`` before the chunk ``chunk``. Returns the controls ``(batch, params, length)``
    and the value of the block before the current one, for the next chunk.
    """
    place: List[int] = position.tolist()
    if place[1] == 0:
        previous = current[:, :, 0]
    values = torch.cat([previous.unsqueeze(-1), current], dim=-1)
    start, length = place[0], chunk.shape[-1]
    controls = upsample_controls(values[:, :, :-1], current, block_size, mode)[:, :, start : start + length]
    ends_inside_a_block = (start + length) % block_size > 0  # the last touched block is still filling
    return controls, values[:, :, -2] if ends_inside_a_block else values[:, :, -1]


class DynamicController(Controller):
    """Peak envelope per control block -> LSTM -> linear read-out -> sigmoid, at audio rate.

    The block-rate part is :class:`~nablafx.controllers.block_rate.BlockRateLSTM`, the
    mechanism of the TFiLM family: the value ``c_j = sigmoid(W h_j + b)`` of control block
    ``j`` (``block_size`` samples) comes from an LSTM that has consumed one step on silence
    and then the peak ``max |x|`` of blocks ``0..j-1`` (plus the knobs, for ``.dc``).
    Samples of block ``j`` ramp from ``c_{j-1}`` to ``c_j`` (``interpolation="linear"``) or
    hold ``c_j``; block 0 holds ``c_0``. So the control of a sample depends only on samples
    before its block: causal, no latency. The read-out bias starts at the logits of ``init``.

    State: ``(block_rate_state, previous)`` -- the ``BlockRateLSTM`` state and the control
    value of the block before the current one; any block size in streaming equals one call,
    and an all-zero state is the start of a stream.

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
        self.control = BlockRateLSTM(1, num_knobs, hidden_size, block_size, readout=(num_params,))
        with torch.no_grad():
            self.readout.bias.copy_(logit(self.init))

    @property
    def lstm(self) -> nn.LSTM:
        return self.control.lstm

    @property
    def readout(self) -> nn.Linear:
        return self.control.readout[0]

    @property
    def receptive_field(self) -> int:
        return 0

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_input(x, knobs)
        level = x.abs().amax(dim=1, keepdim=True).to(self.control.lstm.weight_ih_l0.dtype)  # peak over channels
        if state is None:
            block_state, previous = None, level.new_zeros(x.shape[0], self.num_params)
        else:
            block_state, previous = state
        values, position, block_state = self.control(level, knobs, block_state)
        controls, previous = compiled_when_tracing(ramp_controls)(
            torch.sigmoid(values), previous, position, level, self.block_size, self.interpolation
        )
        return controls.to(x.dtype), (block_state, previous)
