"""Temporal convolutional network (TCN), causal and streamable, with optional conditioning.

Block n (Steinmetz & Reiss, "Efficient neural networks for real-time modeling of analog
dynamic range compression", 2022; NablAFx, arXiv 2502.11668)::

    h   = Conv1d(C_in -> C, k, dilation g**n)(x)      # causal, context cached as state
    h   = modulate(h)                                 # optional FiLM / TFiLM / TTFiLM / TVFiLM
    out = tanh(h) + W_res * x                         # bias-free depthwise 1x1 residual

The residual path uses the current input sample (the reference's causal crop took the
previous one). The first block takes the mono input; a 1x1 head maps C channels to one,
followed by tanh. Receptive field ``rf = 1 + sum_{n=0}^{B-1} (k - 1) g**n``.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from nablafx.core import State
from nablafx.models.base import DilatedConvNet
from nablafx.models.causal_conv import CausalConv1d, ChannelGain1d
from nablafx.models.conditioning import Conditioning, join_block_state, run_modulator, split_block_state

ConditioningName = Literal["none", "film", "tfilm", "ttfilm", "tvfilm"]


def dilated_stack_receptive_field(kernel_size: int, dilation_growth: int, num_blocks: int) -> int:
    """``1 + sum_n (k - 1) * g**n``: samples of input one output sample depends on."""
    return 1 + sum((kernel_size - 1) * dilation_growth**n for n in range(num_blocks))


class TCNBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, kernel_size: int, dilation: int, conditioning: Conditioning):
        super().__init__()
        self.conv = CausalConv1d(in_channels, channels, kernel_size, dilation=dilation)
        self.modulation = conditioning.modulator(channels)
        # bias-free depthwise 1x1 (the first block: 1 -> C, one weight per channel)
        self.residual = ChannelGain1d(in_channels, channels)

    def forward(self, x: Tensor, context, state) -> tuple[Tensor, State]:
        conv_state, modulation_state = split_block_state(state, self.modulation)
        h, conv_state = self.conv(x, conv_state)
        h, modulation_state = run_modulator(self.modulation, h, context, modulation_state)
        return h.tanh() + self.residual(x), join_block_state(conv_state, modulation_state, self.modulation)


class TCN(DilatedConvNet):
    """Causal TCN; ``channels``/``num_blocks``/``kernel_size``/``dilation_growth`` as in the model zoo.

    Args:
        num_knobs: device controls the model is conditioned on (needs a conditioning method).
        conditioning: ``none``, ``film`` (knobs only), ``tfilm``, ``ttfilm``, ``tvfilm``
            (see :mod:`nablafx.models.conditioning`).
        control_block_size: samples per control step of the time-varying methods.

    State: see :mod:`nablafx.models.base`; a block's own state is its cached context
    (the last ``(k - 1) * dilation`` input samples, see :class:`CausalConv1d`).
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
            TCNBlock(1 if n == 0 else channels, channels, kernel_size, dilation_growth**n, self.conditioning)
            for n in range(num_blocks)
        )
        self.head = nn.Conv1d(channels, 1, 1)

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_input(x, knobs)
        block_states, encoder_state = self.unpack_state(state, len(self.blocks))
        context, encoder_state = self.conditioning(x, knobs, encoder_state)
        for n, block in enumerate(self.blocks):
            x, block_states[n] = block(x, context, block_states[n])
        return self.head(x).tanh(), self.pack_state(block_states, encoder_state)
