"""Processors: declared parameters, range checks, both paths, streaming, gradients, assets."""

import math

import pytest
import torch
from dsp_references import assert_matches_reference

from nablafx.core import from_config, process_in_blocks, to_config
from nablafx.processors import (
    BiquadCascade,
    Clipper,
    Compressor,
    DCOffset,
    FIRFilter,
    Gain,
    HighPass,
    HighShelf,
    LowPass,
    LowShelf,
    MLPNonlinearity,
    ParametricEQ,
    Peaking,
    PolarityInversion,
    RationalNonlinearity,
)

D = torch.float64
SR = 48000


def all_processors():
    return [
        Gain(), DCOffset(), PolarityInversion(), ParametricEQ(), LowPass(), HighPass(), Peaking(), LowShelf(),
        HighShelf(), FIRFilter(), MLPNonlinearity(), MLPNonlinearity(lookup_step=None), RationalNonlinearity(),
        Clipper("tanh"), Clipper("hard"), Clipper("soft"), Compressor(),
    ]


def random_controls(processor, batch=2, time=1, seed=0):
    if processor.num_params == 0:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, processor.num_params, time, generator=g, dtype=D)


def reference_tolerance(processor) -> float:
    # The lookup table's interpolation error is step^2/8 max|f''| (documented ~1e-5 at most).
    return 5e-5 if isinstance(processor, MLPNonlinearity) and processor.lookup_step else 1e-9


@pytest.mark.parametrize("processor", all_processors(), ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_output_matches_independent_reference(processor, mode):
    """Both paths against numpy/scipy: eval (exact recursion, controls per batch item) and train
    (frequency sampling for LTI blocks, controls shared by the batch)."""
    processor = getattr(processor.double(), mode)()
    x = 0.5 * torch.randn(2, 1, 2000, dtype=D, generator=torch.Generator().manual_seed(1))
    x[..., :50] *= 8  # drive the nonlinearities and the compressor hard at the start
    controls = random_controls(processor, batch=2 if mode == "eval" else 1, seed=5)
    with torch.no_grad():
        y, _ = processor(x, controls)
    assert_matches_reference(processor, x, controls, y, reference_tolerance(processor))


def test_parametric_eq_declares_the_published_bands():
    eq = ParametricEQ()
    assert eq.num_params == 15
    specs = {s.name: s for s in eq.param_specs}
    assert (specs["low_shelf_cutoff_hz"].minimum, specs["low_shelf_cutoff_hz"].maximum) == (20, 2000)
    assert (specs["band0_cutoff_hz"].minimum, specs["band2_cutoff_hz"].maximum) == (20, 12000)
    assert (specs["high_shelf_cutoff_hz"].minimum, specs["high_shelf_cutoff_hz"].maximum) == (4000, 16000)
    assert all(s.scale == "log" for n, s in specs.items() if n.endswith(("cutoff_hz", "_q")))
    assert all((s.minimum, s.maximum, s.scale) == (-12, 12, "linear") for n, s in specs.items() if n.endswith("gain_db"))


def test_ranges_are_validated_at_construction():
    with pytest.raises(ValueError, match="smaller than maximum"):
        Gain(min_db=6.0, max_db=-6.0)
    with pytest.raises(ValueError, match="Nyquist"):
        LowPass(sample_rate=32000)  # 20 kHz is above 16 kHz
    with pytest.raises(ValueError, match="Nyquist"):
        ParametricEQ(sample_rate=22050)
    with pytest.raises(ValueError, match="valid kinds"):
        BiquadCascade([{"kind": "notch", "cutoff_hz": [100, 200]}])
    with pytest.raises(ValueError, match="valid"):
        Clipper("fold")
    with pytest.raises(ValueError, match="needs controls"):
        Gain()(torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match=r"expects controls"):
        Gain()(torch.zeros(2, 1, 4), torch.zeros(2, 2, 1))


def test_high_shelf_is_a_high_shelf_and_low_shelf_a_low_shelf():
    controls = torch.tensor([[[0.5], [0.5], [1.0]]], dtype=D)  # geometric-centre cutoff, Q 1, +12 dB
    for processor, low_db, high_db in ((HighShelf().double(), 0.0, 12.0), (LowShelf().double(), 12.0, 0.0)):
        values = processor.denormalize(controls)
        response = processor.frequency_response(values, 2**14).abs()
        assert 20 * math.log10(response[0, 1]) == pytest.approx(low_db, abs=0.2)
        assert 20 * math.log10(response[0, -1]) == pytest.approx(high_db, abs=0.2)


@pytest.mark.parametrize("processor", [p for p in all_processors() if p.linear_time_invariant],
                         ids=lambda p: type(p).__name__)
def test_training_and_streaming_paths_agree(processor):
    """LTI blocks: the frequency-sampling response (train) against the exact recursion (eval)
    and against the streaming kernel a plugin runs (64-sample blocks, no autograd)."""
    processor = processor.double()
    x = 0.5 * torch.randn(2, 1, 2000, dtype=D, generator=torch.Generator().manual_seed(1))
    controls = random_controls(processor, batch=1)  # shared by the batch: the frequency-sampling path
    assert processor.train().uses_frequency_sampling(processor.denormalize(controls))
    assert not processor.eval().uses_frequency_sampling(processor.denormalize(controls))
    streaming, _ = processor.eval()(x, controls)
    with torch.no_grad():
        blocks, _ = process_in_blocks(processor.eval(), x, controls, 64)
    training, _ = processor.train()(x, controls)
    torch.testing.assert_close(training, streaming, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(training, blocks, atol=1e-9, rtol=1e-9)


def test_only_lti_blocks_with_shared_static_controls_take_the_frequency_sampling_path():
    for processor in all_processors():
        processor.train()
        shared, per_item = random_controls(processor, batch=1), random_controls(processor, batch=2)
        moving = None if shared is None else shared.expand(-1, -1, 16)
        assert processor.uses_frequency_sampling(processor.denormalize(shared)) == processor.linear_time_invariant
        if processor.num_params:
            assert not processor.uses_frequency_sampling(processor.denormalize(per_item))
            assert not processor.uses_frequency_sampling(processor.denormalize(moving))


def test_streaming_blocks_of_static_biquads_run_the_block_form_and_whole_files_the_recursion():
    """Inference with controls constant in time: host-sized blocks take the block form (with the
    coefficients cached), a whole file the per-sample recursion; both match scipy."""
    from nablafx.processors.biquads import STATIC_FORM_MAX_LENGTH

    eq = ParametricEQ().double().eval()
    controls = random_controls(eq, batch=2)
    x = 0.5 * torch.randn(2, 1, 2 * STATIC_FORM_MAX_LENGTH, dtype=D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert eq.uses_static_form(x[..., :64], controls) and not eq.uses_static_form(x, controls)
        whole, _ = eq(x, controls)
        assert "_static_form" not in eq.__dict__  # the long call took the recursion
        streamed, _ = process_in_blocks(eq, x, controls, 64)
        assert "_static_form" in eq.__dict__
    assert not eq.uses_static_form(x[..., :64], controls)  # with autograd: the differentiable recursion
    torch.testing.assert_close(streamed, whole, atol=1e-9, rtol=0)
    assert_matches_reference(eq, x, controls, streamed, 1e-9)


@pytest.mark.parametrize("processor", all_processors(), ids=lambda p: type(p).__name__)
def test_streaming_equals_one_call(processor):
    processor = processor.eval()
    x = 0.5 * torch.randn(2, 1, 700, generator=torch.Generator().manual_seed(2))
    controls = random_controls(processor)
    controls = None if controls is None else controls.float()
    whole, _ = processor(x, controls)
    for block in (1, 97):
        length = 200 if block == 1 else 700
        streamed, _ = process_in_blocks(processor, x[..., :length], controls, block)
        torch.testing.assert_close(streamed, whole[..., :length], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("processor", [p for p in all_processors() if p.num_params], ids=lambda p: type(p).__name__)
def test_time_varying_controls(processor):
    """Constant time-varying controls equal static ones; a real trajectory streams exactly."""
    processor = processor.double().eval()
    x = 0.5 * torch.randn(2, 1, 600, dtype=D, generator=torch.Generator().manual_seed(3))
    static = random_controls(processor)
    y_static, _ = processor(x, static)
    y_varying, _ = processor(x, static.expand(-1, -1, 600))
    torch.testing.assert_close(y_varying, y_static)
    ramp = torch.linspace(0, 1, 600, dtype=D)
    moving = static * (1 - ramp) + random_controls(processor, seed=9) * ramp
    whole, _ = processor(x, moving)
    assert_matches_reference(processor, x, moving, whole, 1e-9)  # per-sample formulas, per-sample coefficients
    parts, state = [], None
    for start in range(0, 600, 128):
        part, state = processor(x[..., start : start + 128], moving[..., start : start + 128], state)
        parts.append(part)
    torch.testing.assert_close(torch.cat(parts, -1), whole)


@pytest.mark.parametrize("processor", all_processors(), ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_gradients_match_finite_differences(processor, mode, monkeypatch):
    # A short tail keeps the many frequency-sampling evaluations of gradcheck cheap; both
    # the analytic and the numerical gradient see the same (truncated) function.
    monkeypatch.setattr("nablafx.dsp.frequency.DEFAULT_TAIL_SAMPLES", 512)
    processor = getattr(processor.double(), mode)()
    g = torch.Generator().manual_seed(4)
    x = (0.5 * torch.randn(1, 1, 12, dtype=D, generator=g)).requires_grad_()
    inputs = [x]
    if processor.num_params:
        # Keep controls off the range ends and knees so finite differences stay on one branch.
        inputs.append((0.2 + 0.6 * torch.rand(1, processor.num_params, 1, dtype=D, generator=g)).requires_grad_())
    if isinstance(processor, Clipper) and processor.shape != "tanh":
        x.data = x.data.clamp(-0.9, 0.9)  # away from the clipping kink
    controls = inputs[1] if processor.num_params else None
    assert torch.autograd.gradcheck(lambda *args: processor(*args)[0], tuple(inputs))
    # Learned parameters of the block itself (SIRENs excluded for size: checked through x).
    named = {n: p for n, p in processor.named_parameters() if p.numel() <= 16}
    if named:
        # The tanh-fitted rational has denominator terms at the |.| kink; step off it.
        offset = 0.05 if isinstance(processor, RationalNonlinearity) else 0.0
        probes = tuple((p.detach() + offset).requires_grad_() for p in named.values())

        def f(*values):
            return torch.func.functional_call(processor, dict(zip(named, values)), (x.detach(), controls))[0]

        assert torch.autograd.gradcheck(f, probes)


def test_pretrained_assets_load_and_fit_their_targets():
    from nablafx.commands.pretrain import synthetic_cabinet_ir

    mlp = MLPNonlinearity()
    grid = torch.linspace(-4, 4, 801)
    with torch.no_grad():
        assert (mlp.transfer(grid) - grid.tanh()).abs().max() < 0.005
        wide = torch.linspace(-8, 8, 4001, dtype=D)
        assert (mlp.double().transfer(wide) - mlp.network(wide)).abs().max() < 1e-4  # lookup vs network
        assert sum(p.numel() for p in mlp.parameters()) == 2209
        fir = FIRFilter()
        torch.testing.assert_close(fir.taps(), synthetic_cabinet_ir(), atol=1e-4, rtol=0)
        assert sum(p.numel() for p in fir.parameters()) == 4321
    rnl = RationalNonlinearity()
    assert sum(p.numel() for p in rnl.parameters()) == 12
    with torch.no_grad():
        assert (rnl.transfer(grid) - grid.tanh()).abs().max() < 1e-4
    with pytest.raises(FileNotFoundError, match="nablafx pretrain"):
        MLPNonlinearity(weights="missing.pt")


def test_siren_blocks_carry_learning_rate_scale_and_rebuild_from_config():
    for block in (MLPNonlinearity(), FIRFilter()):
        assert all(p._optim == {"lr_scale": 0.01} for p in block.parameters())
    eq = from_config(to_config(ParametricEQ(sample_rate=44100, gain_db_range=[-6, 6])))
    assert eq.sample_rate == 44100 and eq.param_specs[2].maximum == 6
