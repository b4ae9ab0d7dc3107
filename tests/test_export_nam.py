"""NAM export: read back with the neural-amp-modeler package's own loader and compared with ours."""

from __future__ import annotations

import importlib.metadata
import json
import sys

import nam.models
import numpy as np
import pytest
import torch
from export_helpers import export_cli, save_checkpoint, signal, torch_output

# test dependency: neural-amp-modeler 0.12.3, the last release whose reader takes the legacy
# (0.5.x) WaveNet keys written here; 0.13 reads only its newer layout
from nam.models import init_from_nam

from nablafx.export import ExportCheckFailed, UnsupportedExport, export_model
from nablafx.export.metadata import ExportMetadata
from nablafx.errors import ConfigError
from nablafx.export.nam import BURN_IN, load_nam, nam_document, settled_state
from nablafx.models import RNN
from nablafx.models.wavenet import WaveNet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def describe(net, **meta):
    return ExportMetadata.describe(net, {"sample_rate": 48_000, "dataset": "amp", "val_esr": 0.0071, **meta},
                                   name="Test amp", author="tester")


def read_with_nam(path):
    document = json.loads(path.read_text())
    return document, init_from_nam(document).eval()


MODELS = {
    "lstm-16": lambda: RNN(hidden_size=16, output_tanh=False),
    "wavenet-nano": lambda: WaveNet(preset="nano"),
    "wavenet-standard": lambda: WaveNet(preset="standard"),
    "wavenet-gated": lambda: WaveNet(head_scale=0.5, layers=[
        {"channels": 6, "head_size": 3, "kernel_size": 3, "dilations": [1, 4, 16], "gated": True},
        {"channels": 3, "head_size": 1, "kernel_size": 2, "dilations": [2, 8], "head_bias": True,
         "activation": "ReLU"},
    ]),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_nam_loader_reproduces_our_model(name, tmp_path):
    torch.manual_seed(0)
    net = MODELS[name]().eval()
    path = export_model(net, describe(net), "nam", tmp_path / "model.nam", check_samples=3000,
                        options={"gear_type": "amp", "tone_type": "crunch"}).path
    document, nam_model = read_with_nam(path)
    x = signal(3000)
    with torch.no_grad():
        theirs = nam_model(torch.from_numpy(x), pad_start=True).numpy()
    # NAM starts from silence that has already passed through the model (see settled_state)
    ours = torch_output(net, x, None, settled_state(net))
    scale = max(np.abs(ours).max(), 1e-3)
    np.testing.assert_allclose(theirs, ours, atol=1e-5 * scale, rtol=0)
    # an LSTM file merges the two bias vectors (-4H) and adds the initial hidden and cell states (+2H)
    extra = -2 * net.rnn.hidden_size if name.startswith("lstm") else 0
    assert len(document["weights"]) == sum(p.numel() for p in net.parameters()) + extra


def test_nam_weights_round_trip_exactly(tmp_path):
    torch.manual_seed(1)
    net = WaveNet(preset="standard").eval()
    path = export_model(net, describe(net), "nam", tmp_path / "a.nam", check_samples=500).path
    document, nam_model = read_with_nam(path)
    assert len(document["weights"]) == 13_802
    # NAM's own exporter (the methods its .nam writer uses) gives back our config and weights
    assert nam_model._export_config() == document["config"]
    np.testing.assert_array_equal(np.asarray(nam_model._export_weights(), dtype=np.float32),
                                  np.asarray(document["weights"], dtype=np.float32))


def test_lstm_file_starts_settled_like_nam():
    """The stored initial state is the state after BURN_IN samples of silence."""
    torch.manual_seed(0)
    net = RNN(hidden_size=8, output_tanh=False).eval()
    h, c = settled_state(net)
    with torch.no_grad():
        _, (h_ref, c_ref) = net.rnn(torch.zeros(1, BURN_IN, 1))
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)


def test_document_layout_and_metadata(tmp_path):
    net = WaveNet(preset="nano").eval()
    path = export_model(net, describe(net), "nam", tmp_path / "m.nam", check_samples=300,
                        options={"gear_type": "pedal", "tone_type": "overdrive", "gear_make": "Ibanez",
                                 "gear_model": "TS9"}).path
    document = json.loads(path.read_text())
    assert document["version"] == "0.5.4"
    assert document["architecture"] == "WaveNet"
    assert document["sample_rate"] == 48_000 and isinstance(document["sample_rate"], int)
    layer = document["config"]["layers"][0]
    assert layer == {"input_size": 1, "condition_size": 1, "head_size": 2, "channels": 4, "kernel_size": 3,
                     "dilations": [1, 2, 4, 8, 16, 32, 64], "activation": "Tanh", "gated": False, "head_bias": False}
    assert document["config"]["head"] is None and document["config"]["head_scale"] == pytest.approx(0.02)
    meta = document["metadata"]
    assert set(meta["date"]) == {"year", "month", "day", "hour", "minute", "second"}
    assert meta["name"] == "Test amp" and meta["modeled_by"] == "tester"
    assert (meta["gear_type"], meta["tone_type"], meta["gear_make"], meta["gear_model"]) == (
        "pedal", "overdrive", "Ibanez", "TS9")
    assert meta["training"] == {"validation_esr": 0.0071}
    assert meta["nablafx"]["family"] == "wavenet" and meta["nablafx"]["dataset"] == "amp"
    assert "loudness" not in meta  # measured by NAM on its own reference input; unknown here


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: RNN(hidden_size=16), "output_tanh=true"),
        (lambda: RNN(hidden_size=16, output_tanh=False, residual=True), "residual=true"),
        (lambda: RNN(hidden_size=16, cell="gru", output_tanh=False), "LSTM and WaveNet only"),
        (lambda: RNN(num_knobs=1, hidden_size=16, output_tanh=False, conditioning="knobs"), "no knobs"),
        (lambda: WaveNet(num_knobs=1, preset="nano"), "no knobs"),
    ],
)
def test_models_outside_nam_layouts_are_refused(make, message, tmp_path):
    net = make().eval()
    with pytest.raises(UnsupportedExport, match=message):
        export_model(net, describe(net), "nam", tmp_path / "m.nam")
    assert list(tmp_path.iterdir()) == []


def nam_checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(RNN(hidden_size=16, output_tanh=False).eval(), tmp_path / "amp.ckpt")


def test_cli_check_runs_the_file_through_nams_loader(tmp_path, monkeypatch, capsys):
    loaded = []

    def recording_loader(document):
        loaded.append(document)
        return init_from_nam(document)

    monkeypatch.setattr(nam.models, "init_from_nam", recording_loader)
    out = tmp_path / "amp.nam"
    assert export_cli(nam_checkpoint(tmp_path), "--format", "nam", "--out", out) == 0
    assert loaded == [json.loads(out.read_text())]  # the file as written, read by NAM
    version = importlib.metadata.version("neural-amp-modeler")
    assert f"NAM's loader (neural-amp-modeler {version})" in capsys.readouterr().out


def test_cli_check_fails_when_nams_loader_disagrees(tmp_path, monkeypatch):
    """A file NAM would play differently is not written, even though our own reader agrees."""

    class Off(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, **kwargs):
            return self.model(x, **kwargs) + 1e-3

    monkeypatch.setattr(nam.models, "init_from_nam", lambda document: Off(init_from_nam(document)))
    out = tmp_path / "out" / "amp.nam"
    with pytest.raises(ExportCheckFailed, match="NAM's loader"):
        export_cli(nam_checkpoint(tmp_path), "--format", "nam", "--out", out)
    assert list(out.parent.iterdir()) == []


def test_cli_check_falls_back_to_the_numpy_reader_without_nam(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nam.models", None)  # as if neural-amp-modeler were not installed
    out = tmp_path / "amp.nam"
    assert export_cli(nam_checkpoint(tmp_path), "--format", "nam", "--out", out) == 0
    printed = capsys.readouterr().out
    assert "nablafx's reader of the file (neural-amp-modeler not importable" in printed and "NAM's loader" not in printed


@pytest.mark.parametrize("name", ["lstm-16", "wavenet-gated", "wavenet-nano"])
def test_load_nam_plays_files_that_nam_wrote_like_nam(name, tmp_path):
    """A file written by NAM's own exporter, with weights NAM drew, played by nablafx's reader."""
    torch.manual_seed(0)
    net = MODELS[name]().eval()
    path = export_model(net, describe(net), "nam", tmp_path / "model.nam", check_samples=500).path
    _, nam_model = read_with_nam(path)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in nam_model.parameters():
            parameter.uniform_(-0.4, 0.4)
        document = json.loads(json.dumps(nam_model._get_export_dict()))  # NAM's writer, as plain JSON
        if name.startswith("lstm"):  # NAM writes the state after its burn-in of silence; its plugin starts there
            h, c = nam_model._get_initial_state()
            nam_model._initial_hidden.copy_(h[:, 0])
            nam_model._initial_cell.copy_(c[:, 0])
    loaded, state = load_nam(document)
    x = signal(3000)
    with torch.no_grad():
        theirs = nam_model(torch.from_numpy(x), pad_start=True).numpy()
    ours = torch_output(loaded, x, None, state)
    assert np.max(np.abs(theirs)) > 1e-3  # a non-trivial output
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_load_nam_refuses_weights_that_do_not_fit_the_config(tmp_path):
    net = WaveNet(preset="nano").eval()
    document = nam_document(net, describe(net))
    with pytest.raises(ConfigError, match="too short"):
        load_nam({**document, "weights": document["weights"][:-5]})
    with pytest.raises(ConfigError, match="holds .* values but its config uses"):
        load_nam({**document, "weights": document["weights"] + [0.0]})
    with pytest.raises(ConfigError, match="no reader for NAM architecture 'ConvNet'"):
        load_nam({**document, "architecture": "ConvNet"})
