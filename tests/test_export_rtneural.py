"""RTNeural / AIDA-X / Proteus JSON, run by an independent NumPy implementation of each layout.

The Keras reference below follows the Keras layer definitions (``LSTM``: kernel columns
i, f, c, o; ``GRU(reset_after=True)``: columns z, r, h and a 2-row bias) and shares no
code with the exporter; the Proteus reference follows PyTorch's documented LSTM/GRU
equations on the ``state_dict`` matrices.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from export_helpers import signal, torch_output

from nablafx.export import UnsupportedExport, export_model
from nablafx.export.metadata import ExportMetadata
from nablafx.models import RNN, TCN

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


# --- independent references ------------------------------------------------------------------

def keras_lstm(inputs, kernel, recurrent_kernel, bias):
    """Keras LSTM: ``z = x W + h U + b``, columns [i | f | c | o], unit_forget_bias irrelevant here."""
    units = recurrent_kernel.shape[0]
    h, c = np.zeros(units), np.zeros(units)
    out = []
    for x_t in inputs:
        z = x_t @ kernel + h @ recurrent_kernel + bias
        i = sigmoid(z[:units])
        f = sigmoid(z[units : 2 * units])
        c = f * c + i * np.tanh(z[2 * units : 3 * units])
        o = sigmoid(z[3 * units :])
        h = o * np.tanh(c)
        out.append(h)
    return np.array(out)


def keras_gru(inputs, kernel, recurrent_kernel, bias):
    """Keras GRU with reset_after=True: columns [z | r | h], bias rows (input, recurrent)."""
    units = recurrent_kernel.shape[0]
    h = np.zeros(units)
    out = []
    for x_t in inputs:
        matrix_x = x_t @ kernel + bias[0]
        matrix_inner = h @ recurrent_kernel + bias[1]
        z = sigmoid(matrix_x[:units] + matrix_inner[:units])
        r = sigmoid(matrix_x[units : 2 * units] + matrix_inner[units : 2 * units])
        hh = np.tanh(matrix_x[2 * units :] + r * matrix_inner[2 * units :])
        h = z * h + (1 - z) * hh
        out.append(h)
    return np.array(out)


def run_keras_document(document, audio, knobs):
    """Evaluate an RTNeural/AIDA-X document with the Keras references (AIDA-X in_skip included)."""
    width = document["in_shape"][-1]
    inputs = np.column_stack([audio] + [np.full_like(audio, k) for k in knobs]).astype(np.float64)
    assert inputs.shape[1] == width
    signal_ = inputs
    for layer in document["layers"]:
        weights = [np.asarray(w, dtype=np.float64) for w in layer["weights"]]
        if layer["type"] == "lstm":
            signal_ = keras_lstm(signal_, *weights)
        elif layer["type"] == "gru":
            signal_ = keras_gru(signal_, *weights)
        else:
            assert layer["type"] == "dense"
            signal_ = signal_ @ weights[0] + weights[1]
            if layer["activation"] == "tanh":
                signal_ = np.tanh(signal_)
            else:
                assert layer["activation"] == ""
        assert signal_.shape[1] == layer["shape"][-1]
    y = signal_[:, 0]
    return y + audio if document.get("in_skip") else y


def run_proteus_document(document, audio, knobs):
    """PyTorch's LSTM/GRU equations on the state_dict matrices (gates i, f, g, o / r, z, n)."""
    data, sd = document["model_data"], {k: np.asarray(v, dtype=np.float64) for k, v in document["state_dict"].items()}
    H = data["hidden_size"]
    w_ih, w_hh, b_ih, b_hh = sd["rec.weight_ih_l0"], sd["rec.weight_hh_l0"], sd["rec.bias_ih_l0"], sd["rec.bias_hh_l0"]
    h, c = np.zeros(H), np.zeros(H)
    out = []
    for t, sample in enumerate(audio):
        x_t = np.array([sample, *knobs], dtype=np.float64)
        gi, gh = w_ih @ x_t + b_ih, w_hh @ h + b_hh
        if data["unit_type"] == "LSTM":
            g = gi + gh
            i, f, cell, o = sigmoid(g[:H]), sigmoid(g[H : 2 * H]), np.tanh(g[2 * H : 3 * H]), sigmoid(g[3 * H :])
            c = f * c + i * cell
            h = o * np.tanh(c)
        else:
            r = sigmoid(gi[:H] + gh[:H])
            z = sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
            n = np.tanh(gi[2 * H :] + r * gh[2 * H :])
            h = (1 - z) * n + z * h
        out.append(sd["lin.weight"][0] @ h + sd["lin.bias"][0])
    y = np.array(out)
    return y + audio if data["skip"] else y


# --- tests ----------------------------------------------------------------------------------------

def describe(net, **meta):
    names = ["drive", "tone", "level"][: net.num_knobs]
    return ExportMetadata.describe(net, {"sample_rate": 48_000, "knob_names": names, "dataset": "pedal",
                                         "val_esr": 0.009, **meta}, name="Pedal", author="tester")


CASES = {
    # format: [(RNN kwargs), ...]
    "rtneural": [dict(hidden_size=8), dict(hidden_size=12, cell="gru", num_knobs=2, conditioning="knobs"),
                 dict(hidden_size=10, output_tanh=False, num_knobs=3, conditioning="knobs")],
    "aidax": [dict(hidden_size=16, output_tanh=False, residual=True),
              dict(hidden_size=12, cell="gru", output_tanh=False, num_knobs=2, conditioning="knobs"),
              dict(hidden_size=8, output_tanh=False, residual=True, num_knobs=1, conditioning="knobs")],
    "proteus": [dict(hidden_size=20, output_tanh=False, residual=True),
                dict(hidden_size=12, cell="gru", output_tanh=False, num_knobs=1, conditioning="knobs")],
}


@pytest.mark.parametrize("fmt, kwargs", [(f, k) for f, cases in CASES.items() for k in cases])
def test_independent_reference_reproduces_the_model(fmt, kwargs, tmp_path):
    torch.manual_seed(0)
    net = RNN(**kwargs).eval()
    path = export_model(net, describe(net), fmt, tmp_path / "m.json", check_samples=1500).path
    document = json.loads(path.read_text())
    x, knobs = signal(1500), np.linspace(0.2, 0.8, net.num_knobs)
    run = run_proteus_document if fmt == "proteus" else run_keras_document
    np.testing.assert_allclose(run(document, x, knobs), torch_output(net, x, knobs.astype(np.float32)),
                               atol=1e-5, rtol=0)


def test_aidax_document_fields(tmp_path):
    net = RNN(hidden_size=16, output_tanh=False, residual=True, num_knobs=2, conditioning="knobs").eval()
    document = json.loads(export_model(net, describe(net), "aidax", tmp_path / "a.json", check_samples=300)
                          .path.read_text())
    assert document["in_shape"] == [None, None, 3]
    assert document["in_skip"] == 1 and document["in_gain"] == 0.0 and document["out_gain"] == 0.0
    assert [layer["type"] for layer in document["layers"]] == ["lstm", "dense"]
    assert document["layers"][0]["shape"] == [None, None, 16] and document["layers"][1]["activation"] == ""
    assert document["metadata"]["samplerate"] == 48_000 and document["metadata"]["esr"] == 0.009
    assert document["metadata"]["name"] == "Pedal" and document["metadata"]["author"] == "tester"
    assert document["nablafx"]["knob_names"] == ["drive", "tone"]


def test_proteus_document_fields(tmp_path):
    net = RNN(hidden_size=40, output_tanh=False, residual=True).eval()
    document = json.loads(export_model(net, describe(net), "proteus", tmp_path / "p.json", check_samples=300)
                          .path.read_text())
    assert document["model_data"] == {"model": "SimpleRNN", "input_size": 1, "skip": 1, "output_size": 1,
                                      "unit_type": "LSTM", "num_layers": 1, "hidden_size": 40, "bias_fl": True}
    assert set(document["state_dict"]) == {"rec.weight_ih_l0", "rec.weight_hh_l0", "rec.bias_ih_l0",
                                           "rec.bias_hh_l0", "lin.weight", "lin.bias"}
    assert np.asarray(document["state_dict"]["rec.weight_hh_l0"]).shape == (160, 40)


@pytest.mark.parametrize(
    "fmt, make, message",
    [
        ("aidax", lambda: TCN(channels=4, num_blocks=2), "LSTM/GRU"),
        ("aidax", lambda: RNN(hidden_size=96, output_tanh=False), "hidden_size 96"),
        ("aidax", lambda: RNN(hidden_size=16, output_tanh=False, num_knobs=3, conditioning="knobs"), "at most 2 knobs"),
        ("aidax", lambda: RNN(hidden_size=16), "output_tanh=true"),
        ("aidax", lambda: RNN(hidden_size=16, output_tanh=False, conditioning="tvc"), "conditioning='tvc'"),
        ("rtneural", lambda: RNN(hidden_size=16, residual=True), "no input skip"),
        ("rtneural", lambda: TCN(channels=4, num_blocks=2), "LSTM/GRU"),
        ("proteus", lambda: RNN(hidden_size=40), "no output tanh"),
    ],
)
def test_impossible_combinations_fail_before_writing(fmt, make, message, tmp_path):
    net = make().eval()
    with pytest.raises(UnsupportedExport, match=message):
        export_model(net, describe(net), fmt, tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []
