"""TorchScript export: loaded with torch.jit.load and streamed in blocks, against the PyTorch model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dsp_references import s4_recurrence
from export_helpers import blocks_of, build, describe, knob_values, signal, torch_output

from nablafx.export import export_model
from nablafx.export.metadata import ExportMetadata
from nablafx.export.torchscript import METADATA_FILE

TORCHSCRIPT_FAMILIES = ["tcn", "tcn-film-k2", "gcn", "s4", "lstm", "gru-k2", "wavenet", "wavenet-gated-k1",
                        "tcn-tvfilm", "gcn-tfilm-k1", "tcn-ttfilm-k2", "lstm-tvc-k1", "graybox-dist", "graybox-k2"]

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.mark.parametrize("name", TORCHSCRIPT_FAMILIES)
def test_loaded_module_streams_like_pytorch(name, tmp_path):
    net = build(name)
    path = export_model(net, describe(net), "torchscript", tmp_path / "model.pt", check_samples=2000).path
    module = torch.jit.load(str(path))
    x, knobs = signal(2400), knob_values(net)
    reference = torch_output(net, x, knobs)
    # Float32 gray-box chains amplify rounding through gains and nonlinearities: the eager
    # chain itself streams within ~2e-5 of its one-call output here.
    atol = 5e-5 if name.startswith("graybox") else 2e-6
    k = torch.from_numpy(knobs).reshape(1, -1)

    # explicit state: out, *state = step(block, knobs, *state), blocks of several sizes
    for sizes in [(1, 5, 64), (97,), (512, 33), (2400,)]:
        state, outputs = module.initial_state(), []
        for block in blocks_of(x, sizes):
            y, *state = module.step(torch.from_numpy(block).reshape(1, 1, -1), k, *state)
            outputs.append(y.reshape(-1).numpy())
        np.testing.assert_allclose(np.concatenate(outputs), reference, atol=atol, rtol=0, err_msg=str(sizes))

    # stateful wrapper: process(block, knobs) keeps the state; reset() starts again
    module.reset()
    first = np.concatenate([module.process(torch.from_numpy(b), torch.from_numpy(knobs)).numpy()
                            for b in blocks_of(x, (128, 7))])
    module.reset()
    again = np.concatenate([module.process(torch.from_numpy(b), torch.from_numpy(knobs)).numpy()
                            for b in blocks_of(x, (1000,))])
    np.testing.assert_allclose(first, reference, atol=atol, rtol=0)
    np.testing.assert_allclose(again, reference, atol=atol, rtol=0)


def test_module_carries_metadata_and_defaults(tmp_path):
    net = build("tcn-film-k2")
    metadata = ExportMetadata.describe(net, {"sample_rate": 44_100, "knob_names": ["drive", "tone"],
                                             "dataset": "pedal", "val_esr": 0.02}, author="me")
    path = export_model(net, metadata, "torchscript", tmp_path / "m.pt", check_samples=1000).path
    extra = {METADATA_FILE: ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    stored = json.loads(extra[METADATA_FILE])
    assert stored == json.loads(module.metadata)
    assert stored["family"] == "tcn" and stored["knob_names"] == ["drive", "tone"]
    assert stored["knob_ranges"] == [[0.0, 1.0], [0.0, 1.0]]
    assert stored["dataset"] == "pedal" and stored["val_esr"] == 0.02 and stored["author"] == "me"
    assert stored["net"]["init_args"]["conditioning"] == "film"
    assert {"latency", "nablafx_version", "date", "sample_rate"} <= set(stored)
    assert module.latency == 0 and module.sample_rate == 44_100 and module.num_knobs == 2
    assert module.knob_names == ["drive", "tone"]
    # knobs default to 0.5 each
    x = signal(300)
    module.reset()
    default = module.process(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(default, torch_output(net, x, np.array([0.5, 0.5], np.float32)), atol=2e-6)


def test_moving_knobs_mid_stream_follows_the_model(tmp_path):
    """Knob-conditioned filters rebuild their cached block-form operators when the knobs move."""
    net = build("graybox-k2")
    path = export_model(net, describe(net), "torchscript", tmp_path / "model.pt", check_samples=1000).path
    module = torch.jit.load(str(path))
    x = signal(1200)
    settings = [np.array([0.2, 0.9], np.float32), np.array([0.8, 0.1], np.float32), np.array([0.2, 0.9], np.float32)]
    expected, state, outputs = [], None, []
    module.reset()
    for part, knobs in zip(np.array_split(x, 3), settings):
        with torch.no_grad():
            y, state = net(torch.from_numpy(part).reshape(1, 1, -1), torch.from_numpy(knobs).reshape(1, -1), state)
        expected.append(y.reshape(-1).numpy())
        outputs.append(module.process(torch.from_numpy(part), torch.from_numpy(knobs)).numpy())
    np.testing.assert_allclose(np.concatenate(outputs), np.concatenate(expected), atol=5e-5, rtol=0)


def test_s4_block_form_matches_the_per_sample_recurrence():
    """The exported S4 layer (operators fixed at export) against the SSM's definition."""
    from nablafx.models.s4 import DiagonalSSM, FrozenBlockSSM

    net = build("s4")
    ssm = next(module for module in net.modules() if isinstance(module, DiagonalSSM))
    kernel = torch.jit.script(FrozenBlockSSM(ssm))
    u = torch.randn(2, ssm.channels, 500, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, expected_state = s4_recurrence(ssm, u)
        outputs, state = [], None
        for block in u.split([1, 63, 64, 65, 200, 7, 100], dim=-1):  # shorter, equal, longer than a chunk
            y, state = kernel(block, state)
            outputs.append(y)
    torch.testing.assert_close(torch.cat(outputs, dim=-1), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(state, expected_state, atol=1e-5, rtol=0)
