"""The traceable block-rate control equals BlockRateLSTM, chunk by chunk, and survives tracing."""

from __future__ import annotations

import pytest
import torch

from nablafx.export.block_rate import TraceableBlockRate
from nablafx.export.streaming import make_traceable
from nablafx.models.block_control import BlockRateLSTM
from nablafx.models.conditioning import TTFILM_READOUT

CONFIGS = {
    "tfilm": dict(in_features=3, num_knobs=0, hidden_size=6, block_size=8),
    "tvfilm-knobs": dict(in_features=1, num_knobs=2, hidden_size=5, block_size=5, pooling="max_abs"),
    "ttfilm": dict(in_features=4, num_knobs=1, hidden_size=4, block_size=6, bottleneck=4,
                   readout=(*TTFILM_READOUT, 8)),
}


def chunks(x, sizes):
    start, i = 0, 0
    while start < x.shape[-1]:
        yield x[..., start : start + sizes[i % len(sizes)]]
        start += sizes[i % len(sizes)]
        i += 1


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("sizes", [(1,), (3, 11), (40,), (5, 16, 2)])
def test_same_values_and_modulation_as_the_original(name, sizes):
    torch.manual_seed(0)
    original = BlockRateLSTM(**CONFIGS[name]).eval()
    replacement = TraceableBlockRate(original)
    channels = CONFIGS[name]["in_features"]
    x = torch.randn(2, channels, 90)
    knobs = torch.rand(2, original.num_knobs) if original.num_knobs else None
    state_a = state_b = None
    with torch.no_grad():
        for chunk in chunks(x, sizes):
            expected, state_a = original(chunk, knobs, state_a)
            got, state_b = replacement(chunk, knobs, state_b)
            torch.testing.assert_close(got.per_sample(chunk.shape[-1]), expected.per_sample(chunk.shape[-1]))
            if expected.values.shape[1] % 2 == 0 and expected.values.shape[1] // 2 == channels:
                torch.testing.assert_close(got.modulate(chunk), expected.modulate(chunk))
            mapped = torch.nn.Linear(expected.values.shape[1], 2 * channels)
            torch.testing.assert_close(got.map(mapped).modulate(chunk), expected.map(mapped).modulate(chunk))


def test_zero_state_means_a_fresh_stream():
    torch.manual_seed(0)
    original = BlockRateLSTM(1, 1, 4, block_size=4, pooling="max_abs").eval()
    replacement = TraceableBlockRate(original)
    x, knobs = torch.randn(1, 1, 30), torch.rand(1, 1)
    with torch.no_grad():
        _, state = replacement(x[..., :3], knobs, None)
        zeros = tuple(torch.zeros_like(s) for s in state)
        from_none, _ = replacement(x, knobs, None)
        from_zeros, _ = replacement(x, knobs, zeros)
        expected, _ = original(x, knobs, None)
    torch.testing.assert_close(from_zeros.per_sample(30), from_none.per_sample(30))
    torch.testing.assert_close(from_zeros.per_sample(30), expected.per_sample(30))


def test_only_block_rate_modules_are_replaced_in_a_copy():
    from nablafx.models import TCN

    net = TCN(channels=4, num_blocks=2, conditioning="tvfilm")
    traceable = make_traceable(net)
    assert isinstance(traceable.conditioning.encoder, TraceableBlockRate)
    assert isinstance(net.conditioning.encoder, BlockRateLSTM)  # the original is untouched
    assert type(traceable.blocks[0].conv) is type(net.blocks[0].conv)
