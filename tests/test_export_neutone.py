"""Neutone export: loaded back with neutone-sdk and rendered through its sample-queue wrapper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from export_helpers import build, knob_names, knob_values, signal, torch_output
from neutone_sdk.utils import load_neutone_model  # test dependency: neutone-sdk

from nablafx.export import UnsupportedExport, export_model
from nablafx.export.metadata import ExportMetadata
from nablafx.export.neutone import MAX_KNOBS, METADATA_FILE
from nablafx.models import TCN

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def describe(net, **kw):
    return ExportMetadata.describe(net, {"sample_rate": 48_000, "knob_names": knob_names(net), "dataset": "pedal",
                                         "val_esr": 0.01}, **kw)


@pytest.mark.parametrize("name", ["tcn-film-k2", "lstm", "wavenet-gated-k1", "tcn-tvfilm", "graybox-k2"])
def test_sdk_renders_like_pytorch(name, tmp_path):
    net = build(name)
    path = export_model(net, describe(net, name="Test FX", author="tester", description="a test effect"),
                        "neutone", tmp_path / "model.nm", check_samples=1500).path
    model, metadata = load_neutone_model(str(path))
    assert metadata["model_name"] == "Test FX" and metadata["model_authors"] == ["tester"]
    assert metadata["native_sample_rates"] == [48_000]
    assert [p["name"] for p in metadata["neutone_parameters"].values()] == knob_names(net)
    assert model.calc_model_delay_samples() == net.latency == 0

    x, knobs = signal(3000), knob_values(net)
    reference = torch_output(net, x, knobs)
    buffer = 256
    model.set_daw_sample_rate_and_buffer_size(48_000, buffer)
    delay = model.calc_buffering_delay_samples()
    params = torch.zeros(MAX_KNOBS, buffer)
    params[: net.num_knobs] = torch.from_numpy(knobs).unsqueeze(-1)
    audio = torch.zeros(1, -(-(len(x) + delay) // buffer) * buffer)
    audio[0, : len(x)] = torch.from_numpy(x)
    with torch.no_grad():
        rendered = torch.cat([model.forward(chunk, params).clone() for chunk in audio.split(buffer, dim=1)], dim=1)
    atol = 5e-5 if name.startswith("graybox") else 2e-6  # see test_export_torchscript
    np.testing.assert_allclose(rendered[0, delay : delay + len(x)].numpy(), reference, atol=atol, rtol=0)

    # reset() starts from silence again: the same input renders the same output
    model.reset()
    with torch.no_grad():
        again = torch.cat([model.forward(chunk, params).clone() for chunk in audio.split(buffer, dim=1)], dim=1)
    torch.testing.assert_close(again, rendered)


def test_full_metadata_is_stored_in_the_model_file(tmp_path):
    net = build("lstm")
    path = export_model(net, describe(net), "neutone", tmp_path / "m.nm", check_samples=300).path
    extra = {METADATA_FILE: "", "metadata.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    stored = json.loads(extra[METADATA_FILE])
    assert stored["family"] == "lstm" and stored["dataset"] == "pedal" and stored["val_esr"] == 0.01
    assert "nablafx" in json.loads(extra["metadata.json"])["technical_description"]


def test_too_many_knobs_and_long_names_are_refused(tmp_path):
    net = TCN(num_knobs=5, channels=4, num_blocks=2, conditioning="film").eval()
    with pytest.raises(UnsupportedExport, match="at most 4"):
        export_model(net, describe(net), "neutone", tmp_path / "m.nm")
    net = build("lstm")
    with pytest.raises(UnsupportedExport, match="30 characters"):
        export_model(net, describe(net, name="a model name far longer than thirty characters"),
                     "neutone", tmp_path / "m.nm")
    assert list(tmp_path.iterdir()) == []


def test_default_name_of_a_long_dataset_fits_neutone(tmp_path):
    """A checkpoint of the built-in data exports with no --name (its data name carries settings)."""
    net = build("lstm")
    metadata = ExportMetadata.describe(net, {"sample_rate": 48_000, "dataset": "Synth-Overdrive-D060_T050_L050"})
    assert metadata.name == "Synth-Overdrive-D060_T050-lstm"  # 30 characters
    _, stored = load_neutone_model(str(export_model(net, metadata, "neutone", tmp_path / "m.nm",
                                                    check_samples=500).path))
    assert stored["model_name"] == metadata.name
