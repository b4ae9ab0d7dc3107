"""Causal block-rate control: pool a signal per control block, run an LSTM over the blocks.

This one mechanism drives every signal-adaptive conditioning method (TFiLM, TTFiLM,
TVFiLM), the time-varying conditioning input of the recurrent models and the gray-box
dynamic controllers (:class:`nablafx.controllers.DynamicController`). A signal is
cut into control blocks of ``block_size`` samples on a grid fixed to the start of the
stream; each block is max-pooled to one vector, optionally squeezed by a bottleneck,
concatenated with the knobs, and fed as one step to an LSTM.

Causality (differs from the reference, which was not causal within a block). The
reference (Birnbaum et al., "Temporal FiLM", NeurIPS 2019; NablAFx, arXiv 2502.11668)
modulated block ``b`` with the LSTM output for block ``b`` itself, so the first sample of
a block depended on the 127 samples after it. Here block ``b`` is modulated by the LSTM
output computed from blocks ``0 .. b-1`` (one control block of delay)::

    v_0 = LSTM(silence, zero state)            # the block before the stream is silence
    v_b = LSTM(pool(block b-1) (+ knobs), state_{b-1})  for b >= 1

so a control value depends only on samples already seen. That is what makes processing
in host blocks of any size (1, 7, 64, 1000 samples) give exactly the output of one call:
the state carries the partially filled control block (its running max and how many
samples it holds) and the LSTM state.

State: ``(position, partial_pool, h, c)`` -- ``position`` an int64 tensor ``[phase,
started]``: the number of samples already in the current control block, and 0 before the
first sample (1 after); ``partial_pool`` ``(batch, features)`` their running max; ``h, c``
``(1, batch, hidden)`` the LSTM state whose output ``h`` is the control value of the
current block. ``state=None`` and an all-zero state both mean the start of a stream, so an
exported stream starts from zeros like every other model.

One implementation for training, streaming and export: :meth:`BlockRateLSTM.forward` is
written in TorchScript's subset and export compiles the module itself
(``torch.jit.script``), so its per-chunk decisions (how many blocks a chunk completes)
stay dynamic inside a traced graph. :class:`BlockSequence` keeps the stream position in
tensors, and its per-sample expansion and modulation compile when traced, for the same
reason.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from nablafx.errors import ConfigError

POOLINGS = ("max", "max_abs")
BlockRateState = Tuple[Tensor, Tensor, Tensor, Tensor]


def hold_per_sample(values: Tensor, position: Tensor, chunk: Tensor, block_size: int) -> Tensor:
    """Block values held at audio rate over ``chunk``: ``(batch, features, chunk length)``."""
    place: List[int] = position.tolist()  # no tensor operation, unlike position[0]
    return values.repeat_interleave(block_size, dim=-1)[:, :, place[0] : place[0] + chunk.shape[-1]]


def modulate_per_block(x: Tensor, values: Tensor, position: Tensor, block_size: int) -> Tensor:
    """``gamma * x + beta`` with ``[gamma; beta] = values`` per control block.

    The chunk is viewed as control blocks, so gamma/beta broadcast per block instead of
    being expanded per sample.
    """
    batch, channels, length = x.shape[0], x.shape[1], x.shape[2]
    gamma, beta = values.chunk(2, dim=1)
    steps = gamma.shape[-1]
    if steps == 1:  # the chunk lies inside one control block
        return torch.addcmul(beta, x, gamma)
    place: List[int] = position.tolist()
    start = place[0]
    padding = steps * block_size - start - length
    if start > 0 or padding > 0:
        x = F.pad(x, [start, padding])
    y = x.reshape(batch, channels, steps, block_size) * gamma.unsqueeze(-1) + beta.unsqueeze(-1)
    return y.reshape(batch, channels, steps * block_size)[:, :, start : start + length]


_compiled: dict = {}


def compiled_when_tracing(function):
    """``function`` itself, or its TorchScript compilation while a trace is recorded (so the
    stream positions it reads from tensors stay dynamic in the traced graph)."""
    if not torch.jit.is_tracing():
        return function
    if function not in _compiled:
        _compiled[function] = torch.jit.script(function)
    return _compiled[function]


class BlockSequence(NamedTuple):
    """Block-rate values covering one chunk: sample ``t`` uses ``values[..., (offset + t) // block_size]``.

    ``values`` is ``(batch, features, S)`` with ``S = ceil((offset + length) / block_size)``;
    ``position`` is the controller's ``[offset, started]`` before the chunk (int64 tensor):
    ``offset`` samples of the first control block came before it.
    """

    values: Tensor
    position: Tensor
    block_size: int

    def map(self, fn) -> "BlockSequence":
        """Apply a per-step feature map ``(batch, S, features) -> (batch, S, out)`` to the values."""
        return self._replace(values=fn(self.values.transpose(1, 2)).transpose(1, 2))

    def per_sample(self, x: Tensor) -> Tensor:
        """The values held at audio rate over the chunk ``x``: ``(batch, features, length)``."""
        return compiled_when_tracing(hold_per_sample)(self.values, self.position, x, self.block_size)

    def modulate(self, x: Tensor) -> Tensor:
        """Feature-wise affine modulation ``gamma * x + beta`` (Perez et al., FiLM, AAAI 2018).

        The values hold ``[gamma; beta]`` (2 * channels of ``x``).
        """
        return compiled_when_tracing(modulate_per_block)(x, self.values, self.position, self.block_size)


def mlp(widths: Sequence[int], final_activation: bool) -> nn.Sequential:
    """``Linear -> ReLU -> ... -> Linear`` through ``widths`` (optionally a ReLU at the end too)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BlockRateLSTM(nn.Module):
    """Per control block: ``pool -> [bottleneck] -> (+ knobs) -> LSTM -> [readout]``, causal.

    Args:
        in_features: channels of the pooled signal.
        num_knobs: knob values appended to every step (0 for signal-only control).
        hidden_size: LSTM width (its output is the control value unless ``readout`` is set).
        block_size: samples per control step (128 = 375 Hz at 48 kHz).
        pooling: ``"max"`` (of the features, TFiLM) or ``"max_abs"`` (peak level, TVFiLM).
        bottleneck: optional width of a linear squeeze before the LSTM (TTFiLM uses 4).
        readout: optional widths of an MLP after the LSTM, e.g. ``(16, 32, 2C)`` (TTFiLM).
    """

    def __init__(
        self,
        in_features: int,
        num_knobs: int,
        hidden_size: int,
        block_size: int = 128,
        pooling: str = "max",
        bottleneck: int | None = None,
        readout: Sequence[int] = (),
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        if block_size < 1:
            raise ConfigError(f"control block_size must be >= 1, got {block_size}")
        self.in_features: int = in_features
        self.num_knobs: int = num_knobs
        self.block_size: int = block_size
        self.hidden_size: int = hidden_size
        self.pooling = pooling
        self.abs_pooling: bool = pooling == "max_abs"
        # Identity stand-ins keep the module scriptable; the flags skip their calls.
        self.has_bottleneck: bool = bool(bottleneck)
        self.bottleneck = nn.Linear(in_features, bottleneck) if bottleneck else nn.Identity()
        lstm_input = (bottleneck or in_features) + num_knobs
        self.lstm = nn.LSTM(lstm_input, hidden_size, batch_first=True)
        self.has_readout: bool = bool(readout)
        self.readout = mlp([hidden_size, *readout], final_activation=False) if readout else nn.Identity()
        self.out_features: int = readout[-1] if readout else hidden_size

    def initial_state(self, x: Tensor) -> BlockRateState:
        """The all-zero state: the start of a stream."""
        batch = x.shape[0]
        zeros = torch.zeros(1, batch, self.hidden_size, dtype=x.dtype, device=x.device)
        position = torch.zeros(2, dtype=torch.int64)
        return position, torch.zeros(batch, self.in_features, dtype=x.dtype, device=x.device), zeros, zeros

    def _read_out(self, hidden: Tensor) -> Tensor:
        """``(batch, S, hidden)`` LSTM outputs -> ``(batch, out_features, S)`` control values."""
        if self.has_readout:
            hidden = self.readout(hidden)
        return hidden.transpose(1, 2)

    def forward(self, x: Tensor, knobs: Optional[Tensor] = None, state: Optional[BlockRateState] = None
                ) -> Tuple[Tensor, Tensor, BlockRateState]:
        """Control values for the blocks this chunk touches: ``(values (batch, out_features, S),
        position, new_state)``, the first two as a :class:`BlockSequence` holds them
        (:func:`block_sequence` builds one); ``position`` is the state's, before the chunk."""
        if state is None:
            state = self.initial_state(x)
        position, partial, h, c = state
        batch, channels, length = x.shape[0], x.shape[1], x.shape[2]
        if self.abs_pooling:
            x = x.abs()
        place: List[int] = position.tolist()
        fresh = place[1] == 0
        phase = 0 if fresh else place[0]
        if not fresh and phase + length < self.block_size:
            # The chunk stays inside the current control block (the common case when
            # streaming small host blocks): no LSTM step, the control value is unchanged.
            # Few tensor operations here: at 64-sample host blocks this runs on every call.
            chunk_max = x.amax(dim=-1)
            partial = torch.maximum(partial, chunk_max) if phase > 0 else chunk_max
            new_position = torch.tensor([phase + length, 1], dtype=torch.int64)
            return self._read_out(h.transpose(0, 1)), position, (new_position, partial, h, c)

        # The samples of a control block begun in an earlier chunk are represented by
        # `phase` copies of their running max (max is associative), so the chunk splits
        # into whole blocks on the stream's grid plus a partially filled last block.
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

        # One LSTM step per completed block; at the start of the stream, one extra step on
        # silence gives the control value of block 0.
        steps = pooled.transpose(1, 2)  # (batch, completed, channels)
        if fresh:
            steps = torch.cat([torch.zeros(batch, 1, channels, dtype=x.dtype, device=x.device), steps], dim=1)
            h, c = torch.zeros_like(h), torch.zeros_like(c)
        outputs = [h.transpose(0, 1)] if not fresh else []  # the value of the current block
        if steps.shape[1] > 0:
            if self.has_bottleneck:
                steps = self.bottleneck(steps)
            if knobs is not None and self.num_knobs > 0:
                steps = torch.cat([steps, knobs.to(steps.dtype).unsqueeze(1).expand(-1, steps.shape[1], -1)], dim=-1)
            out, (h, c) = self.lstm(steps, (h, c))
            outputs.append(out)
        used = (phase + length + self.block_size - 1) // self.block_size  # blocks touched by this chunk
        values = self._read_out(torch.cat(outputs, dim=1)[:, :used])
        new_position = torch.tensor([(phase + length) % self.block_size, 1], dtype=torch.int64)
        return values, position, (new_position, new_partial, h, c)


def block_sequence(control: nn.Module, x: Tensor, knobs: Tensor | None, state
                   ) -> tuple[BlockSequence, BlockRateState]:
    """Run a :class:`BlockRateLSTM` (or its compiled form) on a chunk: the values as a
    :class:`BlockSequence`, and the new state."""
    values, position, state = control(x, knobs, state)
    return BlockSequence(values, position, control.block_size), state
