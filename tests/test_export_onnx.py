"""ONNX export: streamed by onnxruntime with the state fed back by hand, against the PyTorch model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
from export_helpers import blocks_of, build, describe, knob_values, signal, torch_output

from nablafx.export import UnsupportedExport, export_model
from nablafx.export.metadata import ExportMetadata

ONNX_FAMILIES = ["tcn", "tcn-film-k2", "gcn", "lstm", "gru-k2", "wavenet", "wavenet-gated-k1"]

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def onnx_dtype(type_name: str):
    return {"tensor(float)": np.float32, "tensor(int64)": np.int64}[type_name]


@pytest.mark.parametrize("name", ONNX_FAMILIES)
def test_onnxruntime_streams_like_pytorch(name, tmp_path):
    net = build(name)
    path = export_model(net, describe(net), "onnx", tmp_path / "model.onnx", check_samples=2000).path
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    states = [n for n in inputs if n.startswith("state_")]
    assert outputs == ["out"] + [f"{n}_next" for n in states]
    assert ("knobs" in inputs) == (net.num_knobs > 0)
    assert inputs["block"].shape[2] == "length"  # dynamic block length

    x, knobs = signal(2400), knob_values(net)
    reference = torch_output(net, x, knobs)
    for sizes in [(1, 5, 64), (97,), (512, 33), (2400,)]:
        state = {n: np.zeros(inputs[n].shape, onnx_dtype(inputs[n].type)) for n in states}
        produced = []
        for block in blocks_of(x, sizes):
            feed = {"block": block.reshape(1, 1, -1), **state}
            if net.num_knobs:
                feed["knobs"] = knobs.reshape(1, -1)
            result = dict(zip(outputs, session.run(None, feed)))
            state = {n: result[f"{n}_next"] for n in states}
            produced.append(result["out"].reshape(-1))
        np.testing.assert_allclose(np.concatenate(produced), reference, atol=2e-6, rtol=0, err_msg=str(sizes))


def test_metadata_props(tmp_path):
    net = build("gru-k2")
    metadata = ExportMetadata.describe(net, {"sample_rate": 44_100, "knob_names": ["drive", "tone"], "val_esr": 0.05})
    path = export_model(net, metadata, "onnx", tmp_path / "m.onnx", check_samples=500).path
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["knob_names"]) == ["drive", "tone"]
    assert props["latency"] == "0" and props["sample_rate"] == "44100"
    stored = json.loads(props["nablafx"])
    assert stored["family"] == "gru" and stored["val_esr"] == 0.05
    assert stored["net"]["init_args"]["cell"] == "gru"


@pytest.mark.parametrize("name, reason", [("s4", "complex"), ("tcn-tvfilm", "block-rate control"),
                                          ("lstm-tvc-k1", "block-rate control"), ("graybox-k2", "gray-box")])
def test_models_onnx_cannot_hold_are_refused_with_the_reason(name, reason, tmp_path):
    net = build(name)
    with pytest.raises(UnsupportedExport, match=reason):
        export_model(net, describe(net), "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
