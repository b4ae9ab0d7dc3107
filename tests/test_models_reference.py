"""TCN and GCN against an independent construction from plain ``torch.nn.Conv1d`` layers.

The reference networks below are written from the published block descriptions (Steinmetz
& Reiss 2022 for the TCN, Wright et al. 2020 / WaveNet for the GCN, as restated in the
docstrings of nablafx/models/tcn.py and gcn.py), with zero left padding for causality and
no nablafx code: ordinary ``nn.Conv1d`` layers (the residual gains as real grouped 1x1
convolutions), ``F.pad`` and a full-signal forward pass. Only the weights are copied from
the nablafx model. The nablafx side is run in one call (the generic ``conv1d`` path for
long inputs) and streamed in small blocks (cached context and the gathered-taps path), so
both of its convolution forms are checked against the same reference.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nablafx.core import process_in_blocks
from nablafx.models import GCN, TCN

D = torch.float64
LENGTH = 3000  # > 2048: one call takes the generic dilated conv1d path

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def causal(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` with ``(k - 1) * dilation`` zeros on the left: output n sees inputs <= n only."""
    return conv(F.pad(x, ((conv.kernel_size[0] - 1) * conv.dilation[0], 0)))


class ReferenceTCN(nn.Module):
    """Block n: ``h = conv_n(x)`` (dilation g**n), ``x = tanh(h) + depthwise1x1_n(x)``; out ``tanh(head(x))``."""

    def __init__(self, channels: int, num_blocks: int, kernel_size: int, dilation_growth: int):
        super().__init__()
        ins = [1] + [channels] * (num_blocks - 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(c, channels, kernel_size, dilation=dilation_growth**n) for n, c in enumerate(ins)
        )
        # bias-free depthwise 1x1; block 0 maps the mono input to every channel (groups=1)
        self.residuals = nn.ModuleList(nn.Conv1d(c, channels, 1, groups=c, bias=False) for c in ins)
        self.head = nn.Conv1d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, residual in zip(self.convs, self.residuals):
            x = torch.tanh(causal(conv, x)) + residual(x)
        return torch.tanh(self.head(x))


class ReferenceGCN(nn.Module):
    """Block n: ``y = conv_n(x)`` (2C channels), ``z = tanh(y[:C]) sigmoid(y[C:])``, ``x = mix_n(z) + x``;
    out ``head(concat(z_0 .. z_{B-1}))`` with no output activation."""

    def __init__(self, channels: int, num_blocks: int, kernel_size: int, dilation_growth: int):
        super().__init__()
        self.channels = channels
        ins = [1] + [channels] * (num_blocks - 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(c, 2 * channels, kernel_size, dilation=dilation_growth**n) for n, c in enumerate(ins)
        )
        self.mixes = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in ins)
        self.head = nn.Conv1d(channels * num_blocks, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for conv, mix in zip(self.convs, self.mixes):
            y = causal(conv, x)
            z = torch.tanh(y[:, : self.channels]) * torch.sigmoid(y[:, self.channels :])
            skips.append(z)
            x = mix(z) + x  # identity residual; a mono x broadcasts over the channels in block 0
        return self.head(torch.cat(skips, dim=1))


def copy_weights(model: nn.Module, reference: nn.Module) -> None:
    """Weights of ``model`` into ``reference``, layer by layer (shapes must agree exactly)."""
    pairs = [(model.head, reference.head)]
    for n, block in enumerate(model.blocks):
        side = (block.residual, reference.residuals[n]) if isinstance(model, TCN) else (block.mix, reference.mixes[n])
        pairs += [(block.conv, reference.convs[n]), side]
    with torch.no_grad():
        for source, target in pairs:
            for name, parameter in target.named_parameters(recurse=False):
                parameter.copy_(getattr(source, name))


def randomise(model: nn.Module, seed: int) -> None:
    """Weights ~ N(0, 1 / fan_in) and biases ~ N(0, 0.1^2): every tanh/sigmoid works off its linear region."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            scale = parameter[0].numel() ** -0.5 if parameter.dim() > 1 else 0.1
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=D))


SIZES = {
    "45-s-16": dict(channels=16, num_blocks=5, kernel_size=7, dilation_growth=4),  # the defaults
    "small-k5-g3": dict(channels=6, num_blocks=4, kernel_size=5, dilation_growth=3),
    "k2-g2": dict(channels=3, num_blocks=6, kernel_size=2, dilation_growth=2),
}


@pytest.mark.parametrize("family", ["tcn", "gcn"])
@pytest.mark.parametrize("size", list(SIZES))
def test_output_equals_plain_conv1d_construction(family, size):
    model_cls, reference_cls = (TCN, ReferenceTCN) if family == "tcn" else (GCN, ReferenceGCN)
    model = model_cls(**SIZES[size]).to(D).eval()
    reference = reference_cls(**SIZES[size]).to(D).eval()
    randomise(model, seed=1)
    copy_weights(model, reference)
    assert sum(p.numel() for p in reference.parameters()) == sum(p.numel() for p in model.parameters())
    x = 0.7 * torch.randn(2, 1, LENGTH, dtype=D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(x)
        one_call, _ = model(x)
        streamed, _ = process_in_blocks(model, x, None, 64)
        odd, _ = process_in_blocks(model, x[..., :700], None, 97)
    assert expected.abs().max() > 0.1 and expected.std() > 0.05  # a signal, not a constant
    torch.testing.assert_close(one_call, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(streamed, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(odd, expected[..., :700], atol=1e-10, rtol=0)


@pytest.mark.parametrize("family", ["tcn", "gcn"])
def test_reference_detects_a_wrong_dilation(family):
    """The comparison can fail: the same weights with the dilations of another growth differ."""
    model_cls, reference_cls = (TCN, ReferenceTCN) if family == "tcn" else (GCN, ReferenceGCN)
    size = SIZES["small-k5-g3"]
    model = model_cls(**size).to(D).eval()
    wrong = reference_cls(**{**size, "dilation_growth": 2}).to(D).eval()
    randomise(model, seed=1)
    copy_weights(model, wrong)
    x = 0.7 * torch.randn(1, 1, 500, dtype=D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (model(x)[0] - wrong(x)).abs().max() > 1e-3
