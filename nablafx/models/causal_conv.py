"""Causal 1-D convolution with a cached context, the streaming building block of TCN/GCN/WaveNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from nablafx.errors import ConfigError

# Up to this many output samples a dilated convolution gathers its taps and does one matrix
# product: the generic dilated kernel has a large fixed cost per call, which dominates
# streaming-sized blocks; from a few thousand samples on, the two cost about the same.
SMALL_BLOCK = 2048


class CausalConv1d(nn.Conv1d):
    """A dilated ``Conv1d`` whose left context is carried as state instead of re-computed.

    The state is the last ``(kernel_size - 1) * dilation`` input samples. ``state=None``
    means silence (zeros), so a signal processed in blocks with the carried state gives
    exactly the output of one call, and no block ever re-runs the receptive field.

    Dilated calls of up to :attr:`gather_limit` output samples gather their taps
    (:meth:`_gathered_taps`); the ONNX exporter sets the limit to 0 on its copy, because
    ``Tensor.unfold`` has no ONNX form for a dynamic length, while ``F.conv1d`` is ONNX's ``Conv``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.gather_limit = SMALL_BLOCK

    @property
    def context(self) -> int:
        return (self.kernel_size[0] - 1) * self.dilation[0]

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if state is None:
            state = x.new_zeros(x.shape[0], x.shape[1], self.context)
        x = torch.cat([state, x], dim=-1)
        length = x.shape[-1] - self.context
        if self.dilation[0] > 1 and length <= self.gather_limit:
            y = self._gathered_taps(x, length)
        else:
            y = F.conv1d(x, self.weight, self.bias, dilation=self.dilation)
        return y, x[..., x.shape[-1] - self.context :]

    def _gathered_taps(self, x: Tensor, length: int) -> Tensor:
        """Dilated convolution as one matrix product over the k taps (im2col without a copy of x).

        ``x.unfold`` views the k windows ``x[j d : j d + length]`` as ``(batch, C, k, length)``;
        on streaming-sized blocks this beats the generic dilated convolution several times.
        """
        taps = x.unfold(-1, length, self.dilation[0])
        taps = taps.reshape(x.shape[0], -1, length)  # (batch, C * k, length), channel-major like the weight
        y = torch.matmul(self.weight.reshape(self.out_channels, -1), taps)
        return y if self.bias is None else y + self.bias.unsqueeze(-1)


class ChannelGain1d(nn.Conv1d):
    """A 1x1 ``Conv1d`` with one input channel per output channel, computed as a per-channel gain.

    ``y[c] = w[c] * x[c]`` (depthwise, ``in == out``) or ``y[c] = w[c] * x[0]`` (``in == 1``):
    the residual paths of TCN and S4 blocks. Same parameters and state-dict layout as
    ``nn.Conv1d(in, out, 1, groups=in)``, but a broadcast multiply instead of the grouped
    convolution, whose fixed cost per call dominates small streaming blocks.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False):
        if in_channels not in (1, out_channels):
            raise ConfigError(f"ChannelGain1d maps 1 or {out_channels} channels to {out_channels}, got {in_channels}")
        super().__init__(in_channels, out_channels, 1, groups=in_channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        y = x * self.weight[..., 0]  # (out, 1) broadcasts over (batch, channels, time)
        return y if self.bias is None else y + self.bias.unsqueeze(-1)
