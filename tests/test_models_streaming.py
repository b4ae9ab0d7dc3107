"""Streaming: any host block size with the carried state equals one call; S4's two forms agree."""

from __future__ import annotations

import copy
import functools
import itertools

import numpy as np
import pytest
import torch
from dsp_references import s4_recurrence

from nablafx.core import detach_state, map_state, process_in_blocks
from nablafx.models import GCN, RNN, S4, TCN, DiagonalSSM

BLOCK_SIZES = [1, 7, 64, 128, 1000]
LENGTH = 1100  # crosses a 1000-sample host block and many control blocks
LENGTH_PER_SAMPLE = 260  # block size 1 costs one call per sample: keep it short
CONTROL_BLOCK = 16  # many control steps in a short signal; 128 is tested separately

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def small_model(family: str, conditioning: str, num_knobs: int, control_block_size: int = CONTROL_BLOCK):
    if family == "rnn":
        return RNN(num_knobs, hidden_size=6, cell="lstm", conditioning=conditioning, control_block_size=control_block_size)
    if family == "gru":
        return RNN(num_knobs, hidden_size=6, cell="gru", conditioning=conditioning, control_block_size=control_block_size)
    if family == "s4":
        return S4(num_knobs, channels=4, num_blocks=2, state_size=3, conditioning=conditioning,
                  control_block_size=control_block_size)
    cls = TCN if family == "tcn" else GCN
    # dilations 1, 4, 16: the last layer's context (32 samples) is longer than small host blocks
    return cls(num_knobs, channels=4, num_blocks=3, kernel_size=3, dilation_growth=4, conditioning=conditioning,
               control_block_size=control_block_size)


def variants():
    for family in ("tcn", "gcn", "s4"):
        yield family, "none", 0
        for conditioning in ("film", "tfilm", "ttfilm", "tvfilm"):
            if conditioning != "film":
                yield family, conditioning, 0
            yield family, conditioning, 2
    for family in ("rnn", "gru"):
        yield from [(family, "none", 0), (family, "knobs", 2), (family, "tvc", 0), (family, "tvc", 2)]


def signal(length: int, batch: int = 2, dtype=torch.float64) -> torch.Tensor:
    torch.manual_seed(3)
    # a swell and a decay, so signal-adaptive conditioning has something to follow
    envelope = torch.linspace(0, 1, length, dtype=dtype).mul(6.0).sin().abs() + 0.05
    return 0.8 * envelope * torch.randn(batch, 1, length, dtype=dtype)


def assert_streams_like_one_call(model, dtype, tolerance, block_sizes=BLOCK_SIZES):
    model = model.to(dtype).eval()  # eval: FiLM's BatchNorm uses running statistics
    knobs = torch.rand(2, model.num_knobs, dtype=dtype) if model.num_knobs else None
    x = signal(LENGTH, dtype=dtype)
    with torch.no_grad():
        reference, _ = model(x, knobs)
    for block_size in block_sizes:
        length = LENGTH_PER_SAMPLE if block_size == 1 else LENGTH
        streamed, _ = process_in_blocks(model, x[..., :length], knobs, block_size)
        error = (streamed - reference[..., :length]).abs().max().item()
        assert error <= tolerance, f"block size {block_size}: max abs error {error:.2e}"


@pytest.mark.parametrize("family, conditioning, num_knobs", list(variants()), ids=lambda v: str(v))
def test_streaming_equals_one_call_float64(family, conditioning, num_knobs):
    torch.manual_seed(0)
    assert_streams_like_one_call(small_model(family, conditioning, num_knobs), torch.float64, 1e-10)


@pytest.mark.parametrize(
    "model",
    [
        TCN(num_knobs=1, conditioning="tfilm"),
        GCN(num_knobs=1, conditioning="film"),
        S4(num_knobs=1, conditioning="tvfilm"),
        S4(num_blocks=2, state_size=32, conditioning="ttfilm"),
        RNN(num_knobs=1, conditioning="tvc"),
    ],
    ids=["tcn-tf-k1", "gcn-f-k1", "s4-tvf-k1", "s4-ttf-s32", "lstm-tvc-k1"],
)
def test_streaming_equals_one_call_float32_full_width(model):
    """Real widths and the default 128-sample control block, in the training dtype."""
    torch.manual_seed(0)
    assert_streams_like_one_call(model, torch.float32, 1e-4, block_sizes=[7, 64, 128, 1000])


def test_state_is_plain_tensors_and_supports_truncated_bptt():
    model = TCN(num_knobs=1, channels=4, num_blocks=2, conditioning="tvfilm", control_block_size=16)
    x, knobs = signal(200, dtype=torch.float32), torch.rand(2, 1)
    y_full, _ = model(x, knobs)
    _, state = model(x[..., :90], knobs)
    seen = []
    map_state(seen.append, state)
    assert seen and all(isinstance(t, torch.Tensor) for t in seen)
    y_rest, _ = model(x[..., 90:], knobs, detach_state(state))
    assert torch.allclose(y_rest, y_full[..., 90:], atol=1e-6)
    # Gradients flow into the past through a carried state and stop at a detached one.
    x = x.clone().requires_grad_()
    for detach, reaches_the_past in ((False, True), (True, False)):
        _, state = model(x[..., :90], knobs)
        y_rest, _ = model(x[..., 90:], knobs, detach_state(state) if detach else state)
        (gradient,) = torch.autograd.grad(y_rest.square().sum(), x)
        assert bool(gradient[..., :90].abs().max() > 0) == reaches_the_past
        assert gradient[..., 90:].abs().max() > 0
    # the state can be copied (e.g. to restart a stream from a snapshot)
    y_copy, _ = model(x[..., 90:], knobs, copy.deepcopy(detach_state(state)))
    assert torch.allclose(y_copy, y_rest)


def test_film_batchnorm_in_train_mode_depends_on_the_chunk():
    """Documented limitation: stream in eval mode (running statistics)."""
    model = TCN(num_knobs=1, channels=4, num_blocks=2, conditioning="film").train()
    x, knobs = signal(512, dtype=torch.float32), torch.rand(2, 1)
    with torch.no_grad():
        y_one, _ = model(x, knobs)
        y_blocks, _ = process_in_blocks(model, x, knobs, 64)
    assert (y_one - y_blocks).abs().max() > 1e-3


# --- S4: FFT convolution vs recurrence, optimiser hints ------------------------------------------------


@pytest.mark.parametrize("with_state", [False, True])
def test_ssm_convolution_equals_recurrence(with_state):
    torch.manual_seed(0)
    ssm = DiagonalSSM(channels=3, state_size=8).double()
    u = torch.randn(2, 3, 500, dtype=torch.float64)
    state = torch.randn(2, 3, 8, 2, dtype=torch.float64) if with_state else None
    y_conv, s_conv = ssm.convolution(u, state)
    y_rec, s_rec = s4_recurrence(ssm, u, state)
    assert (y_conv - y_rec).abs().max() < 1e-10
    assert (s_conv - s_rec).abs().max() < 1e-10


def test_ssm_convolution_equals_recurrence_float32():
    torch.manual_seed(0)
    ssm = DiagonalSSM(channels=4, state_size=32)
    u = 0.5 * torch.randn(1, 4, 3000)
    y_conv, _ = ssm.convolution(u)
    y_rec, _ = s4_recurrence(ssm, u)
    assert (y_conv - y_rec).abs().max() < 1e-4


def test_ssm_parameter_layout_and_init():
    ssm = DiagonalSSM(channels=16, state_size=4)
    sizes = {name: p.numel() for name, p in ssm.named_parameters()}
    assert sizes == {"log_dt": 16, "log_A_real": 64, "A_imag": 64, "C": 128, "D": 16}
    dt_A, _, _ = ssm.discretize()
    A = dt_A / torch.exp(ssm.log_dt).unsqueeze(-1)
    assert torch.allclose(A.real, torch.full_like(A.real, -0.5))
    assert torch.allclose(A.imag, torch.pi * torch.arange(4.0).expand(16, 4))  # S4D-Lin
    dt = torch.exp(ssm.log_dt)
    assert dt.min() >= 1e-3 and dt.max() <= 1e-1


def test_ssm_optimiser_hints():
    model = S4(num_blocks=2, ssm_lr=1e-3)
    hinted = {name: getattr(p, "_optim", None) for name, p in model.named_parameters()}
    for name, hint in hinted.items():
        if name.endswith(("log_dt", "log_A_real", "A_imag")):
            assert hint == {"lr": 1e-3, "weight_decay": 0.0}, name
        else:
            assert hint is None, name
    # hints survive dtype/device moves and copies (checkpoint averaging, EMA, ...)
    for copied in (model.double(), copy.deepcopy(model)):
        assert copied.blocks[1].ssm.A_imag._optim == {"lr": 1e-3, "weight_decay": 0.0}
    assert S4(num_blocks=1, ssm_lr=None).blocks[0].ssm.log_dt._optim == {"weight_decay": 0.0}


def test_control_grid_is_fixed_to_the_stream_start():
    """The partially filled control block is carried: split points inside a control block are exact."""
    model = S4(num_knobs=1, channels=4, num_blocks=1, state_size=2, conditioning="tfilm", control_block_size=128).double()
    x, knobs = signal(400), torch.rand(2, 1, dtype=torch.float64)
    with torch.no_grad():
        reference, _ = model(x, knobs)
        for first, second in itertools.product([1, 127, 128, 129], [5, 250]):
            y1, state = model(x[..., :first], knobs)
            y2, state = model(x[..., first : first + second], knobs, state)
            y3, _ = model(x[..., first + second :], knobs, state)
            assert (torch.cat([y1, y2, y3], -1) - reference).abs().max() < 1e-12


def test_ssm_forms_agree_in_gradients_and_block_matrix_form():
    """Training differentiates the chunked FFT form; its gradients match the recurrence's."""
    torch.manual_seed(0)
    ssm = DiagonalSSM(channels=2, state_size=3).double()
    u = torch.randn(1, 2, 300, dtype=torch.float64)
    state = torch.randn(1, 2, 3, 2, dtype=torch.float64)
    grads = []
    for form in (ssm.convolution, functools.partial(s4_recurrence, ssm), ssm.block_recurrence):
        ssm.zero_grad()
        y, new_state = form(u, state)
        (y.square().sum() + new_state.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in ssm.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-8, atol=1e-8)
    assert torch.allclose(grads[2], grads[1], rtol=1e-8, atol=1e-8)


def test_ssm_long_input_is_chunked_exactly():
    from nablafx.models import s4

    torch.manual_seed(0)
    ssm = DiagonalSSM(channels=2, state_size=4).double()
    u = torch.randn(2, 2, 3 * s4.CHUNK + 77, dtype=torch.float64)  # several chunks and a short tail
    y_conv, s_conv = ssm.convolution(u)
    y_rec, s_rec = s4_recurrence(ssm, u)
    assert (y_conv - y_rec).abs().max() < 1e-9 and (s_conv - s_rec).abs().max() < 1e-9


def test_ssm_cache_follows_parameter_updates():
    torch.manual_seed(0)
    ssm = DiagonalSSM(channels=2, state_size=3)
    u = torch.randn(1, 2, 64)
    with torch.no_grad():
        before, _ = ssm(u)
        ssm.D.add_(1.0)  # as an optimiser step would
        after, _ = ssm(u)
    assert torch.allclose(after - before, u, atol=1e-5)


def test_feed_blocks_takes_sizes_in_turn_and_keeps_the_type():
    from nablafx.core import feed_blocks
    from nablafx.errors import ConfigError

    seen = []

    def record(block):
        seen.append(block.shape[-1])
        return 2 * block

    x = np.arange(20, dtype=np.float32)
    y = feed_blocks(record, x, (1, 7, 3))
    assert seen == [1, 7, 3, 1, 7, 1] and isinstance(y, np.ndarray) and np.array_equal(y, 2 * x)
    t = torch.arange(10.0).reshape(1, 1, 10)
    assert torch.equal(feed_blocks(lambda b: b + 1, t, 4), t + 1)
    assert feed_blocks(record, torch.zeros(1, 1, 0), 4).shape == (1, 1, 0)
    with pytest.raises(ConfigError, match="block sizes must be >= 1"):
        feed_blocks(record, x, (64, 0))
