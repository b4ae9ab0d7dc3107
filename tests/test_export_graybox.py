"""Gray-box export pieces against independent references: scipy.signal for the recursions, the
eager controllers for their scripted forms (the end-to-end exports are in test_export_torchscript
and test_export_neutone)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from torch.utils._pytree import tree_map

from nablafx.controllers import DynamicController
from nablafx.dsp.biquad import biquad_coefficients
from nablafx.dsp.dynamics import smooth_gain, smooth_gain_scripted
from nablafx.dsp.recursion import iir_filter, iir_filter_scripted
from nablafx.processors.biquads import BlockBiquadCascade
from nablafx.export.streaming import make_traceable

RATE = 48_000


def eq_sections() -> tuple[torch.Tensor, torch.Tensor]:
    """A low shelf at 30 Hz (poles within ~4e-3 of z = 1), two peaks and a high shelf: (1, 4, 1, 3)."""
    bands = [("lowshelf", 30.0, 0.7, 9.0), ("peaking", 300.0, 2.0, -6.0), ("peaking", 3000.0, 8.0, 10.0),
             ("highshelf", 9000.0, 0.7, -4.0)]
    bs, as_ = [], []
    for kind, cutoff, q, gain in bands:
        b, a = biquad_coefficients(kind, torch.tensor([[cutoff]], dtype=torch.float64),
                                   torch.tensor([[q]], dtype=torch.float64),
                                   torch.tensor([[gain]], dtype=torch.float64), RATE)
        bs.append(b)
        as_.append(a)
    return torch.stack(bs, dim=1), torch.stack(as_, dim=1)


def test_block_form_cascade_matches_scipy_across_blocks():
    b, a = eq_sections()
    x = np.random.default_rng(0).standard_normal(3000)
    sos = np.concatenate([b[0, :, 0].numpy(), a[0, :, 0].numpy()], axis=1)
    reference = scipy.signal.sosfilt(sos, x)
    kernel = torch.jit.script(BlockBiquadCascade(chunk=64))
    state, outputs = None, []
    start = 0
    for size in (1, 63, 64, 65, 200, 7, 1500, 1100):  # shorter, equal and longer than a chunk
        block = torch.from_numpy(x[start : start + size]).reshape(1, 1, -1)
        y, state = kernel(block, b, a, state)
        outputs.append(y.reshape(-1).numpy())
        start += size
    assert start == len(x)
    np.testing.assert_allclose(np.concatenate(outputs), reference, atol=1e-9 * np.abs(reference).max(), rtol=0)


def test_block_form_state_has_the_layout_of_biquad_filter():
    """Same state in and out as nablafx.dsp.iir.biquad_filter (a stream may switch between them)."""
    from nablafx.dsp.iir import biquad_filter

    b, a = eq_sections()
    x = torch.randn(2, 3, 150, dtype=torch.float64)
    state = 0.1 * torch.randn(2, 3, 4, 4, dtype=torch.float64)
    expected, expected_state = biquad_filter(x, b, a, state)
    y, new_state = torch.jit.script(BlockBiquadCascade(chunk=32))(x, b, a, state)
    torch.testing.assert_close(y, expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(new_state, expected_state, atol=1e-9, rtol=0)


def test_block_form_rebuilds_its_operators_when_the_coefficients_change():
    b, a = eq_sections()
    kernel = torch.jit.script(BlockBiquadCascade())
    x = torch.randn(1, 1, 100, dtype=torch.float64)
    kernel(x, b, a, None)
    b2 = b.clone()
    b2[:, 1] *= 0.5  # a knob moved: one section's gain halves
    y, _ = kernel(x, b2, a, None)
    sos = np.concatenate([b2[0, :, 0].numpy(), a[0, :, 0].numpy()], axis=1)
    np.testing.assert_allclose(y.reshape(-1).numpy(), scipy.signal.sosfilt(sos, x.reshape(-1).numpy()), atol=1e-12)


def test_scripted_recursion_matches_scipy_with_initial_conditions():
    rng = np.random.default_rng(1)
    b = np.array([0.3, -0.2, 0.1])
    a = np.array([1.0, -1.5, 0.7])
    x = rng.standard_normal(500)
    x_hist, y_hist = rng.standard_normal(2), rng.standard_normal(2)  # [x[-1], x[-2]], [y[-1], y[-2]]
    reference, _ = scipy.signal.lfilter(b, a, x, zi=scipy.signal.lfiltic(b, a, y_hist, x_hist))
    y = iir_filter_scripted(torch.from_numpy(x).reshape(1, -1), torch.from_numpy(b).reshape(1, 3, 1),
                            torch.from_numpy(a[1:]).reshape(1, 2, 1), torch.from_numpy(x_hist).reshape(1, 2),
                            torch.from_numpy(y_hist).reshape(1, 2))
    np.testing.assert_allclose(y.reshape(-1).numpy(), reference, atol=1e-12)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_scripted_recursion_is_the_time_varying_kernel_and_is_used_under_tracing():
    torch.manual_seed(0)
    x = torch.randn(2, 300)
    b = 0.3 * torch.randn(2, 3, 300)
    a = torch.stack([torch.linspace(-1.8, -0.5, 300), torch.full((300,), 0.6)]).expand(2, -1, -1)
    x_init, y_init = torch.randn(2, 2), torch.randn(2, 2)
    expected = iir_filter(x, b, a, x_init, y_init)
    torch.testing.assert_close(iir_filter_scripted(x, b, a, x_init, y_init), expected, atol=1e-6, rtol=0)
    traced = torch.jit.trace(lambda x: iir_filter(x, b, a, x_init, y_init), (x,))
    torch.testing.assert_close(traced(x), expected, atol=1e-6, rtol=0)  # numba is out of a trace's reach


def test_scripted_compressor_smoother_matches_the_kernel():
    torch.manual_seed(0)
    reduction = -20 * torch.rand(2, 400).pow(3)
    attack = torch.full((1, 1), 0.7)
    release = torch.linspace(0.95, 0.999, 400).unsqueeze(0)
    state = torch.tensor([-6.0, 0.0])
    expected, expected_state = smooth_gain(reduction, attack, release, state)
    smoothed = smooth_gain_scripted(reduction, attack.expand(2, -1), release.expand(2, -1), state)
    torch.testing.assert_close(smoothed, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(smoothed[:, -1], expected_state, atol=1e-5, rtol=0)


class FixedKnobs(torch.nn.Module):
    """``controller(block, knobs, state)`` with the knobs fixed, for tracing."""

    def __init__(self, controller, knobs):
        super().__init__()
        self.controller, self.knobs = controller, knobs

    def forward(self, block, state):
        return self.controller(block, self.knobs, state)


@pytest.mark.parametrize("interpolation", ["linear", "hold"])
@pytest.mark.parametrize("num_knobs", [0, 2])
def test_traced_dynamic_controller_streams_like_the_original(interpolation, num_knobs):
    """Traced at one block size from an all-zero state (as exported models begin), the
    controller gives the eager controls for irregular blocks."""
    torch.manual_seed(0)
    original = DynamicController(3, num_knobs, block_size=16, interpolation=interpolation).eval()
    traceable = make_traceable(original)
    x = torch.randn(1, 1, 300) * torch.linspace(0.1, 1.0, 300)
    knobs = torch.rand(1, num_knobs) if num_knobs else None
    with torch.no_grad():
        expected, _ = original(x, knobs)
        _, state = traceable(x[..., :64], knobs)
        zeros = tree_map(torch.zeros_like, state)
        traced = torch.jit.trace(FixedKnobs(traceable, knobs), (x[..., :64], zeros), check_trace=False)
        outputs, state = [], zeros
        for block in x.split([1, 15, 16, 17, 100, 3, 148], dim=-1):
            controls, state = traced(block, state)
            outputs.append(controls)
    torch.testing.assert_close(torch.cat(outputs, dim=-1), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("drive_db", [0.0, 12.0])
def test_exported_siren_nonlinearity_holds_for_inputs_louder_than_the_check(drive_db, tmp_path):
    """The SIREN's lookup grid follows the input's range in eager mode; the artefact must give the
    same curve at any level, not the grid of the signal it was traced or checked with. At 12 dB of
    drive the 8x signal reaches ~29 at the nonlinearity, past the exported table (MLP_TABLE_LIMIT)."""
    from export_helpers import describe, torch_output

    from nablafx.controllers.base import logit
    from nablafx.export import export_model
    from nablafx.export.check import check_signal
    from nablafx.export.streaming import MLP_TABLE_LIMIT
    from nablafx.models import GrayBoxChain

    net = GrayBoxChain(spec="g.s+mlp+g.s").eval()
    with torch.no_grad():  # gains of +drive and -drive dB (range +-40 dB)
        net.stages[0].controller.logits.copy_(logit(torch.tensor([(drive_db + 40) / 80])))
        net.stages[2].controller.logits.copy_(logit(torch.tensor([(40 - drive_db) / 80])))
    path = export_model(net, describe(net), "torchscript", tmp_path / "m.pt", check_samples=4000).path
    module = torch.jit.load(str(path))
    x = 8 * check_signal(12_000)  # peak 8x the export check's
    reference = torch_output(net, x)
    peak_at_nonlinearity = np.abs(x).max() * 10 ** (drive_db / 20)
    assert peak_at_nonlinearity > 7 and (drive_db == 0) == (peak_at_nonlinearity < MLP_TABLE_LIMIT)
    with torch.no_grad():
        one_call = module.process(torch.from_numpy(x)).numpy()
        module.reset()
        blocks = np.concatenate([module.process(torch.from_numpy(b)).numpy() for b in np.split(x, 125)])
    assert np.abs(reference).max() > 0.5 * 10 ** (-drive_db / 20)  # the saturated curve, not silence
    np.testing.assert_allclose(one_call, reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(blocks, reference, atol=1e-5, rtol=0)
