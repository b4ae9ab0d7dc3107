"""Block-rate control in a form a trace can hold: the same computation, with its bookkeeping scripted.

:class:`~nablafx.models.block_control.BlockRateLSTM` (TFiLM, TTFiLM, TVFiLM and the RNN's
``tvc`` input) decides in Python how many control blocks a chunk completes, from the
number of samples seen so far. A trace would freeze those decisions, so for export each
``BlockRateLSTM`` of a copy of the model is replaced
(:func:`nablafx.export.streaming.make_traceable`) by
:class:`TraceableBlockRate`: the pooling / LSTM / read-out step lives in
:class:`ScriptedBlockRate` (TorchScript, so its branches and loops stay dynamic), and the
block sequence it returns (:class:`TensorBlockSequence`) offers the same ``map``,
``per_sample`` and ``modulate`` as ``BlockSequence`` with the stream position kept in
tensors (TorchScript helpers below) instead of Python ints.

State: ``(phase, partial_pool, h, c, started)``. The model's own state has no
``started``; it uses ``state=None`` for the start of a stream and then runs one LSTM
step on silence. Here an all-zero state (``started == 0``) means the same, so an exported
stream starts from zeros like every other model.

This mirrors ``BlockRateLSTM.forward`` step by step; the export check (and
tests/test_export_block_rate.py) compare the two on irregular block sizes.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from nablafx.models.block_control import BlockRateLSTM

BlockRateState = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


class ScriptedBlockRate(nn.Module):
    """``BlockRateLSTM.forward`` in TorchScript (shares the original's LSTM, bottleneck, read-out)."""

    def __init__(self, original: BlockRateLSTM):
        super().__init__()
        self.block_size: int = original.block_size
        self.num_knobs: int = original.num_knobs
        self.abs_pooling: bool = original.pooling == "max_abs"
        self.lstm = original.lstm
        self.bottleneck = original.bottleneck if original.bottleneck is not None else nn.Identity()
        self.readout = original.readout if original.readout is not None else nn.Identity()

    def forward(self, x: Tensor, knobs: Optional[Tensor], state: BlockRateState
                ) -> Tuple[Tensor, Tensor, Tensor, BlockRateState]:
        """Returns ``(values (batch, features, S), offset, length, new_state)``."""
        phase_t, partial, h, c, started = state
        batch, channels, length = x.shape[0], x.shape[1], x.shape[2]
        if self.abs_pooling:
            x = x.abs()
        fresh = bool(started == 0)
        phase = 0 if fresh else int(phase_t)
        if phase > 0:
            x = torch.cat([partial.unsqueeze(-1).expand(-1, -1, phase), x], dim=-1)
        completed = (phase + length) // self.block_size
        whole = completed * self.block_size
        pooled = x[:, :, :whole].reshape(batch, channels, completed, self.block_size).amax(dim=-1)
        remainder = x[:, :, whole:]
        if remainder.shape[-1] > 0:
            new_partial = remainder.amax(dim=-1)
        else:
            new_partial = torch.zeros(batch, channels, dtype=x.dtype, device=x.device)

        steps = pooled.transpose(1, 2)  # (batch, completed, channels)
        if fresh:  # the control value of block 0 comes from one step on silence
            steps = torch.cat([torch.zeros(batch, 1, channels, dtype=x.dtype, device=x.device), steps], dim=1)
        outputs: List[Tensor] = []
        if not fresh:
            outputs.append(h.transpose(0, 1))  # the value of the current block
        if steps.shape[1] > 0:
            steps = self.bottleneck(steps)
            if knobs is not None and self.num_knobs > 0:
                steps = torch.cat([steps, knobs.to(steps.dtype).unsqueeze(1).expand(-1, steps.shape[1], -1)], dim=-1)
            out, (h, c) = self.lstm(steps, (h, c))  # zeros when fresh: the LSTM's own start
            outputs.append(out)
        used = (phase + length + self.block_size - 1) // self.block_size
        values = self.readout(torch.cat(outputs, dim=1)[:, :used])
        new_phase = torch.tensor((phase + length) % self.block_size, dtype=torch.int64)
        offset = torch.tensor(phase, dtype=torch.int64)
        new_state = (new_phase, new_partial, h, c, torch.ones_like(started))
        return values.transpose(1, 2), offset, torch.tensor(length, dtype=torch.int64), new_state


@torch.jit.script
def hold_per_sample(values: Tensor, offset: Tensor, block_size: int, length: Tensor) -> Tensor:
    """Block values held at audio rate over the chunk: ``(batch, features, length)``."""
    start = int(offset)
    return values.repeat_interleave(block_size, dim=-1)[:, :, start : start + int(length)]


@torch.jit.script
def modulate_per_block(x: Tensor, values: Tensor, offset: Tensor, block_size: int) -> Tensor:
    """``gamma * x + beta`` with ``[gamma; beta] = values`` held per control block."""
    start = int(offset)
    length = x.shape[-1]
    held = values.repeat_interleave(block_size, dim=-1)[:, :, start : start + length]
    gamma, beta = held.chunk(2, dim=1)
    return x * gamma + beta


class TensorBlockSequence(NamedTuple):
    """``BlockSequence`` with the chunk's offset and length as tensors (see module docstring)."""

    values: Tensor
    offset: Tensor
    length: Tensor
    block_size: int

    def map(self, fn) -> "TensorBlockSequence":
        return self._replace(values=fn(self.values.transpose(1, 2)).transpose(1, 2))

    def per_sample(self, length: int) -> Tensor:
        # ``length`` is the chunk's length (the only one callers pass); the tensor copy of it
        # keeps the trace valid for every block size.
        return hold_per_sample(self.values, self.offset, self.block_size, self.length)

    def modulate(self, x: Tensor) -> Tensor:
        return modulate_per_block(x, self.values, self.offset, self.block_size)


class TraceableBlockRate(nn.Module):
    """Drop-in replacement of a ``BlockRateLSTM`` for tracing (same call, zero-start state)."""

    def __init__(self, original: BlockRateLSTM):
        super().__init__()
        self.block_size = original.block_size
        self.hidden_size = original.lstm.hidden_size
        self.kernel = torch.jit.script(ScriptedBlockRate(original))

    def forward(self, x: Tensor, knobs: Tensor | None = None, state=None):
        if state is None:
            batch, channels = x.shape[0], x.shape[1]
            zeros = x.new_zeros(1, batch, self.hidden_size)
            state = (torch.zeros((), dtype=torch.int64), x.new_zeros(batch, channels), zeros, zeros,
                     torch.zeros((), dtype=torch.int64))
        values, offset, length, state = self.kernel(x, knobs, state)
        return TensorBlockSequence(values, offset, length, self.block_size), state
