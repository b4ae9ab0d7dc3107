"""Causal block-rate control: pool a signal per control block, run an LSTM over the blocks.

This one mechanism drives every signal-adaptive conditioning method (TFiLM, TTFiLM,
TVFiLM) and the time-varying conditioning input of the recurrent models. A signal is
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

State: ``(phase, partial_pool, h, c)`` -- ``phase`` a 0-dim int64 tensor with the number of
samples already in the current control block, ``partial_pool`` ``(batch, features)`` their
running max, ``h, c`` ``(1, batch, hidden)`` the LSTM state whose output ``h`` is the
control value of the current block.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from nablafx.errors import ConfigError

POOLINGS = ("max", "max_abs")


class BlockSequence(NamedTuple):
    """Block-rate values covering one chunk: sample ``t`` uses ``values[..., (offset + t) // block_size]``.

    ``values`` is ``(batch, features, S)`` with ``S = ceil((offset + length) / block_size)``;
    ``offset`` is how many samples of the first control block came before this chunk.
    """

    values: Tensor
    offset: int
    block_size: int

    def map(self, fn) -> "BlockSequence":
        """Apply a per-step feature map ``(batch, S, features) -> (batch, S, out)`` to the values."""
        return self._replace(values=fn(self.values.transpose(1, 2)).transpose(1, 2))

    def per_sample(self, length: int) -> Tensor:
        """The values held at audio rate, ``(batch, features, length)``."""
        held = self.values.repeat_interleave(self.block_size, dim=-1)
        return held[..., self.offset : self.offset + length]

    def modulate(self, x: Tensor) -> Tensor:
        """Feature-wise affine modulation ``gamma * x + beta`` (Perez et al., FiLM, AAAI 2018).

        The values hold ``[gamma; beta]`` (2 * channels of ``x``). The chunk is viewed as
        control blocks so gamma/beta broadcast per block instead of being expanded per sample.
        """
        batch, channels, length = x.shape
        gamma, beta = self.values.chunk(2, dim=1)
        steps = gamma.shape[-1]
        if steps == 1:  # the chunk lies inside one control block
            return torch.addcmul(beta, x, gamma)
        padding = steps * self.block_size - self.offset - length
        if self.offset or padding:
            x = F.pad(x, (self.offset, padding))
        y = x.reshape(batch, channels, steps, self.block_size) * gamma.unsqueeze(-1) + beta.unsqueeze(-1)
        return y.reshape(batch, channels, -1)[..., self.offset : self.offset + length]


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
        self.in_features = in_features
        self.num_knobs = num_knobs
        self.block_size = block_size
        self.pooling = pooling
        self.bottleneck = nn.Linear(in_features, bottleneck) if bottleneck else None
        lstm_input = (bottleneck or in_features) + num_knobs
        self.lstm = nn.LSTM(lstm_input, hidden_size, batch_first=True)
        self.readout = mlp([hidden_size, *readout], final_activation=False) if readout else None
        self.out_features = readout[-1] if readout else hidden_size

    def forward(self, x: Tensor, knobs: Tensor | None = None, state=None) -> tuple[BlockSequence, tuple]:
        batch, channels, length = x.shape
        if self.pooling == "max_abs":
            x = x.abs()
        if state is None:
            phase, partial, lstm_state = 0, None, None
        else:
            phase_t, partial, h, c = state
            phase, lstm_state = int(phase_t), (h, c)
            if phase + length < self.block_size:
                # The chunk stays inside the current control block (the common case when
                # streaming small host blocks): no LSTM step, the control value is unchanged.
                chunk_max = x.amax(dim=-1)
                partial = torch.maximum(partial, chunk_max) if phase else chunk_max
                values = h.transpose(0, 1)
                if self.readout is not None:
                    values = self.readout(values)
                sequence = BlockSequence(values.transpose(1, 2), phase, self.block_size)
                return sequence, (phase_t + length, partial, h, c)

        # The samples of a control block begun in an earlier chunk are represented by
        # `phase` copies of their running max (max is associative), so the chunk splits
        # into whole blocks on the stream's grid plus a partially filled last block.
        if phase:
            x = torch.cat([partial.unsqueeze(-1).expand(-1, -1, phase), x], dim=-1)
        completed = (phase + length) // self.block_size
        whole = completed * self.block_size
        pooled = x[..., :whole].reshape(batch, channels, completed, self.block_size).amax(dim=-1)
        remainder = x[..., whole:]
        new_partial = remainder.amax(dim=-1) if remainder.shape[-1] else x.new_zeros(batch, channels)

        # One LSTM step per completed block; at the start of the stream, one extra step on
        # silence gives the control value of block 0.
        steps = pooled.transpose(1, 2)  # (batch, completed, channels)
        if lstm_state is None:
            steps = torch.cat([steps.new_zeros(batch, 1, channels), steps], dim=1)
        outputs = []
        if lstm_state is not None:
            outputs.append(lstm_state[0].transpose(0, 1))  # value of the current block
        if steps.shape[1]:
            if self.bottleneck is not None:
                steps = self.bottleneck(steps)
            if self.num_knobs:
                steps = torch.cat([steps, knobs.unsqueeze(1).expand(-1, steps.shape[1], -1).to(steps)], dim=-1)
            out, lstm_state = self.lstm(steps, lstm_state)
            outputs.append(out)
        values = torch.cat(outputs, dim=1)  # (batch, completed + 1, hidden)

        used = -(-(phase + length) // self.block_size)  # ceil: blocks touched by this chunk
        values = values[:, :used]
        if self.readout is not None:
            values = self.readout(values)
        new_phase = torch.tensor((phase + length) % self.block_size, dtype=torch.int64)
        new_state = (new_phase, new_partial, lstm_state[0], lstm_state[1])
        return BlockSequence(values.transpose(1, 2), phase, self.block_size), new_state
