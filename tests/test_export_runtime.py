"""Streaming runtime, the speed benchmark of exported artefacts, and the plugin-ready configs."""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from export_helpers import blocks_of, build, knob_names, signal, torch_output

from nablafx.core import from_config
from nablafx.export import check_export, export_model
from nablafx.runtime import StreamingRuntime
from nablafx.export.bench import bench_exported, format_table
from nablafx.export.metadata import ExportMetadata
from nablafx.training.module import EffectModule

PLUGIN_CFG = Path(__file__).resolve().parents[1] / "cfg" / "model" / "plugin"

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.mark.parametrize("name", ["tcn-film-k2", "gru-k2", "wavenet"])
def test_runtime_any_block_size_equals_one_call(name):
    net = build(name)
    knobs = np.linspace(0.1, 0.9, net.num_knobs)
    runtime = StreamingRuntime(net, knobs)
    x = signal(2000)
    reference = torch_output(net, x, knobs.astype(np.float32))
    for sizes in [(1, 3, 64), (97,), (2000,)]:
        runtime.reset()
        y = np.concatenate([runtime.process(block) for block in blocks_of(x, sizes)])
        np.testing.assert_allclose(y, reference, atol=5e-6, rtol=0)
    assert runtime.latency == 0


def test_runtime_channels_tensors_and_knob_changes():
    net = build("tcn-film-k2")
    runtime = StreamingRuntime(net)  # knobs default to 0.5
    stereo = torch.from_numpy(np.stack([signal(600, seed=1), signal(600, seed=2)]))
    first = runtime.process(stereo[:, :250])
    second = runtime.process(stereo[:, 250:], knobs=[0.5, 0.5])
    assert isinstance(first, torch.Tensor) and first.shape == (2, 250)
    for channel in range(2):
        expected = torch_output(net, stereo[channel].numpy(), np.array([0.5, 0.5], np.float32))
        np.testing.assert_allclose(torch.cat([first, second], -1)[channel].numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="call reset"):
        runtime.process(stereo[:1, :10])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        runtime.process(stereo[:, :10], knobs=[1.5, 0.0])
    with pytest.raises(ValueError, match="2 knob"):
        StreamingRuntime(net, knobs=[0.5])


def test_bench_exported_reports_both_runtimes(tmp_path):
    results = []
    for name, fmt, suffix in [("lstm", "torchscript", ".pt"), ("tcn", "onnx", ".onnx")]:
        net = build(name)
        metadata = ExportMetadata.describe(net, {"sample_rate": 48_000, "knob_names": knob_names(net)})
        path = export_model(net, metadata, fmt, tmp_path / f"{name}{suffix}", check_samples=300).path
        result = bench_exported(path, block_sizes=(64, 512), seconds=0.05, budget=0.2)
        assert result["format"] == fmt and result["family"] == name
        for runtime in ("exported", "pytorch"):
            assert sorted(result[runtime]) == [64, 512]  # one figure per block size asked for
            assert all(math.isfinite(result[runtime][n]) for n in (64, 512))
        results.append(result)
    table = format_table(results)
    assert "torchscript" in table and "onnx" in table and "pytorch" in table
    with pytest.raises(ValueError, match="C\\+\\+ plugins"):
        bench_exported(tmp_path / "model.nam")


# (config file, format it is made for)
PLUGIN_CONFIGS = [
    ("nam-lstm-16.yaml", "nam"),
    ("aidax-lstm-16.yaml", "aidax"),
    ("aidax-lstm-16-k1.yaml", "aidax"),
    ("proteus-lstm-40.yaml", "proteus"),
]


@pytest.mark.parametrize("config_file, fmt", PLUGIN_CONFIGS)
def test_plugin_configs_fit_their_format_and_train(config_file, fmt):
    config = yaml.safe_load((PLUGIN_CFG / config_file).read_text())["model"]
    net = from_config(config["net"]).eval()
    metadata = ExportMetadata.describe(net, {"sample_rate": 48_000})
    check_export(net, metadata, fmt)  # raises when the layout does not fit
    # the training module accepts the config, and gradients reach every weight
    module = EffectModule(**{**config, "net": net.train()})
    knobs = torch.rand(2, net.num_knobs) if net.num_knobs else None
    y, _ = module(torch.randn(2, 1, 256) * 0.3, knobs)
    y.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())
