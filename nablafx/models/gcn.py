"""Gated convolutional network (GCN, WaveNet-style), causal and streamable, with optional conditioning.

Block n (van den Oord et al., "WaveNet", 2016; Wright et al., "Real-time guitar amplifier
emulation with deep learning", 2020; NablAFx, arXiv 2502.11668)::

    y   = Conv1d(C_in -> 2C, k, dilation g**n)(x)     # causal, context cached as state
    y   = modulate(y)                                 # optional conditioning on all 2C channels
    z   = tanh(y[:C]) * sigmoid(y[C:])                # gated activation, also the skip output
    out = Conv1d(C -> C, 1)(z) + x                    # identity residual (broadcast from 1 channel in block 0)

Output: the skips of all B blocks are concatenated (C * B channels) and mixed by a 1x1
Conv1d(C * B -> 1); no output tanh. Receptive field ``1 + sum_n (k - 1) g**n``.

The last block's 1x1 residual mix feeds nothing (only its skip reaches the output). It is
kept so the parameter layout, and the published parameter counts, match the reference;
the forward pass skips computing it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nablafx.core import State
from nablafx.models.base import DilatedConvNet
from nablafx.models.causal_conv import CausalConv1d
from nablafx.models.conditioning import Conditioning, join_block_state, run_modulator, split_block_state
from nablafx.models.tcn import ConditioningName


class GCNBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, kernel_size: int, dilation: int, conditioning: Conditioning):
        super().__init__()
        self.channels = channels
        self.conv = CausalConv1d(in_channels, 2 * channels, kernel_size, dilation=dilation)
        self.modulation = conditioning.modulator(2 * channels)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor, context, state, need_residual: bool = True) -> tuple[Tensor | None, Tensor, State]:
        conv_state, modulation_state = split_block_state(state, self.modulation)
        y, conv_state = self.conv(x, conv_state)
        y, modulation_state = run_modulator(self.modulation, y, context, modulation_state)
        z = torch.tanh(y[:, : self.channels]) * torch.sigmoid(y[:, self.channels :])
        out = self.mix(z) + x if need_residual else None
        return out, z, join_block_state(conv_state, modulation_state, self.modulation)


class GCN(DilatedConvNet):
    """Causal gated convolutional network with concatenated skips (see module docstring).

    Arguments and state layout as :class:`nablafx.models.TCN`.
    """

    def __init__(
        self,
        num_knobs: int = 0,
        channels: int = 16,
        num_blocks: int = 5,
        kernel_size: int = 7,
        dilation_growth: int = 4,
        conditioning: ConditioningName = "none",
        control_block_size: int = 128,
    ):
        super().__init__()
        self._setup_conditioning(num_knobs, conditioning, control_block_size)
        self.blocks = nn.ModuleList(
            GCNBlock(1 if n == 0 else channels, channels, kernel_size, dilation_growth**n, self.conditioning)
            for n in range(num_blocks)
        )
        self.head = nn.Conv1d(channels * num_blocks, 1, 1)

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_input(x, knobs)
        block_states, encoder_state = self.unpack_state(state, len(self.blocks))
        context, encoder_state = self.conditioning(x, knobs, encoder_state)
        skips = []
        last = len(self.blocks) - 1
        for n, block in enumerate(self.blocks):
            x, z, block_states[n] = block(x, context, block_states[n], need_residual=n < last)
            skips.append(z)
        return self.head(torch.cat(skips, dim=1)), self.pack_state(block_states, encoder_state)
