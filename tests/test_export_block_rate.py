"""Block-rate control is one implementation: compiled for export it equals the eager module
chunk by chunk, and a traced graph of it stays valid for every block size."""

from __future__ import annotations

import pytest
import torch

from nablafx.export.streaming import make_traceable
from nablafx.controllers.block_rate import BlockRateLSTM, block_sequence
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
def test_compiled_control_gives_the_same_values_and_modulation(name, sizes):
    torch.manual_seed(0)
    eager = BlockRateLSTM(**CONFIGS[name]).eval()
    compiled = torch.jit.script(eager)
    channels = CONFIGS[name]["in_features"]
    x = torch.randn(2, channels, 90)
    knobs = torch.rand(2, eager.num_knobs) if eager.num_knobs else None
    mapped = torch.nn.Linear(BlockRateLSTM(**CONFIGS[name]).out_features, 2 * channels)
    state_a = state_b = None
    streamed = []
    with torch.no_grad():
        for chunk in chunks(x, sizes):
            expected, state_a = block_sequence(eager, chunk, knobs, state_a)
            got, state_b = block_sequence(compiled, chunk, knobs, state_b)
            assert expected.per_sample(chunk).shape[-1] == chunk.shape[-1]
            torch.testing.assert_close(got.per_sample(chunk), expected.per_sample(chunk))
            torch.testing.assert_close(got.map(mapped).modulate(chunk), expected.map(mapped).modulate(chunk))
            streamed.append(expected.map(mapped).modulate(chunk))
        whole, _ = block_sequence(eager, x, knobs, None)  # streamed in chunks = one call
        torch.testing.assert_close(torch.cat(streamed, dim=-1), whole.map(mapped).modulate(x))


def test_zero_state_means_a_fresh_stream():
    torch.manual_seed(0)
    control = BlockRateLSTM(1, 1, 4, block_size=4, pooling="max_abs").eval()
    x, knobs = torch.randn(1, 1, 30), torch.rand(1, 1)
    with torch.no_grad():
        _, state = block_sequence(control, x[..., :3], knobs, None)
        zeros = tuple(torch.zeros_like(s) for s in state)
        for module in (control, torch.jit.script(control)):
            from_none, _ = block_sequence(module, x, knobs, None)
            from_zeros, _ = block_sequence(module, x, knobs, zeros)
            torch.testing.assert_close(from_zeros.per_sample(x), from_none.per_sample(x))


class Modulated(torch.nn.Module):
    """TFiLM in miniature: the signal modulated by block-rate control of itself."""

    def __init__(self, control):
        super().__init__()
        self.control = control

    def forward(self, x, state):
        sequence, state = block_sequence(self.control, x, None, state)
        return sequence.modulate(x) + sequence.map(lambda v: v[..., :1]).per_sample(x), state


def test_a_trace_at_one_block_size_streams_every_block_size():
    torch.manual_seed(0)
    eager = Modulated(BlockRateLSTM(1, 0, 2, block_size=8)).eval()
    traceable = make_traceable(eager)
    x = torch.randn(1, 1, 200)
    with torch.no_grad():
        _, state = traceable(x[..., :16], None)
        zeros = tuple(torch.zeros_like(s) for s in state)
        traced = torch.jit.trace(traceable, (x[..., :16], zeros), check_trace=False)
        expected, _ = eager(x, None)
        outputs, state = [], zeros
        for piece in x.split([1, 7, 16, 33, 64, 3, 76], dim=-1):
            y, state = traced(piece, state)
            outputs.append(y)
    torch.testing.assert_close(torch.cat(outputs, dim=-1), expected)


def test_only_block_rate_modules_are_compiled_in_a_copy():
    from nablafx.models import TCN

    net = TCN(channels=4, num_blocks=2, conditioning="tvfilm")
    traceable = make_traceable(net)
    assert isinstance(traceable.conditioning.encoder, torch.jit.ScriptModule)
    assert isinstance(net.conditioning.encoder, BlockRateLSTM)  # the original is untouched
    assert type(traceable.blocks[0].conv) is type(net.blocks[0].conv)
