"""RTNeural JSON ("Keras" layout) and its AIDA-X variant, for the recurrent family.

Document::

    {"in_shape": [null, null, N],          # N = 1 audio + number of knobs, per sample
     "layers": [<recurrent layer>, <dense layer>],
     "nablafx": {...export metadata...}}

A layer is ``{"type", "activation", "shape": [null, null, width], "weights"}`` with the
weights in Keras order:

- ``lstm``: ``[kernel (N x 4H), recurrent (H x 4H), bias (4H)]`` = ``weight_ih`` transposed,
  ``weight_hh`` transposed, ``bias_ih + bias_hh``; gates i, f, g, o in both frameworks;
- ``gru``: ``[kernel (N x 3H), recurrent (H x 3H), bias (2 x 3H)]``, transposed likewise
  but with the gate blocks reordered from PyTorch's (r, z, n) to Keras' (z, r, h); the
  bias rows are the input and recurrent biases, reordered the same way (Keras'
  ``reset_after=True`` GRU, which is PyTorch's);
- ``dense``: ``[kernel (H x 1), bias (1)]`` = ``weight`` transposed; ``activation`` "tanh"
  when the model squashes its output, else "".

Knobs are the extra inputs, in the model's knob order (our ``conditioning="knobs"`` RNN
appends them to each sample the same way). Plain RTNeural has no input skip, so a
residual model is refused.

AIDA-X adds ``in_skip`` (1: the plugin adds the input audio to the output, our
``residual``), ``in_gain``/``out_gain`` (dB, 0) and ``metadata`` (name, samplerate,
author, esr). AIDA-X loads only one lstm/gru of width in :data:`AIDAX_WIDTHS` followed by
a dense to 1 without activation, with 1-3 inputs (audio + up to 2 knobs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nablafx.export.check import max_error, reference_output
from nablafx.export.errors import UnsupportedExport
from nablafx.export.metadata import ExportMetadata

AIDAX_WIDTHS = (8, 12, 16, 20, 24, 32, 40, 64, 80)
AIDAX_MAX_KNOBS = 2
SUPPORTED_RTNEURAL = "lstm, gru (conditioning none or knobs, no residual)"
SUPPORTED_AIDAX = (
    f"lstm, gru of width {', '.join(map(str, AIDAX_WIDTHS))}; conditioning none or knobs "
    f"(<= {AIDAX_MAX_KNOBS}); no output tanh; residual -> in_skip"
)

# PyTorch GRU gate blocks (r, z, n) -> Keras (z, r, h)
_GRU_TO_KERAS = (1, 0, 2)


def check_recurrent(net: nn.Module, metadata: ExportMetadata, format_name: str) -> None:
    """The model must be our one-layer LSTM/GRU with the knobs (if any) as inputs."""
    if metadata.family not in ("lstm", "gru"):
        raise UnsupportedExport(
            f"{format_name} holds LSTM/GRU + dense models only; this model is a {metadata.family}"
        )
    if net.conditioning not in ("none", "knobs"):
        raise UnsupportedExport(
            f"{format_name} feeds knobs as extra inputs per sample; this RNN uses conditioning="
            f"{net.conditioning!r}; train with conditioning: knobs (or none)"
        )


def check(net: nn.Module, metadata: ExportMetadata) -> None:
    check_recurrent(net, metadata, "RTNeural JSON")
    if net.residual:
        raise UnsupportedExport(
            "plain RTNeural JSON has no input skip, so residual=true cannot be expressed; "
            "use --format aidax (in_skip) or train with residual: false"
        )


def check_aidax(net: nn.Module, metadata: ExportMetadata) -> None:
    check_recurrent(net, metadata, "AIDA-X")
    hidden = net.rnn.hidden_size
    if hidden not in AIDAX_WIDTHS:
        raise UnsupportedExport(
            f"AIDA-X loads recurrent layers of width {', '.join(map(str, AIDAX_WIDTHS))}; this "
            f"{metadata.family.upper()} has hidden_size {hidden}"
        )
    if net.num_knobs > AIDAX_MAX_KNOBS:
        raise UnsupportedExport(
            f"AIDA-X takes at most {AIDAX_MAX_KNOBS} knobs (1-3 inputs); this model has {net.num_knobs}"
        )
    if net.output_tanh:
        raise UnsupportedExport(
            "AIDA-X models end in a dense layer without activation; this RNN has output_tanh=true "
            "(train with output_tanh: false, e.g. cfg/model/plugin/aidax-lstm-16.yaml)"
        )


def _lists(t: torch.Tensor) -> list:
    return t.detach().to(torch.float32).tolist()


def _gru_blocks(t: torch.Tensor, hidden: int) -> torch.Tensor:
    """Reorder the 3H gate axis (last) from PyTorch (r, z, n) to Keras (z, r, h)."""
    blocks = t.split(hidden, dim=-1)
    return torch.cat([blocks[i] for i in _GRU_TO_KERAS], dim=-1)


def keras_layers(net: nn.Module) -> list[dict]:
    """The recurrent and dense layers of ``net`` in RTNeural's Keras layout."""
    rnn, hidden = net.rnn, net.rnn.hidden_size
    if isinstance(rnn, nn.LSTM):
        recurrent = {
            "type": "lstm",
            "weights": [
                _lists(rnn.weight_ih_l0.T), _lists(rnn.weight_hh_l0.T), _lists(rnn.bias_ih_l0 + rnn.bias_hh_l0),
            ],
        }
    else:
        recurrent = {
            "type": "gru",
            "weights": [
                _lists(_gru_blocks(rnn.weight_ih_l0.T, hidden)),
                _lists(_gru_blocks(rnn.weight_hh_l0.T, hidden)),
                _lists(_gru_blocks(torch.stack([rnn.bias_ih_l0, rnn.bias_hh_l0]), hidden)),
            ],
        }
    recurrent.update(activation="", shape=[None, None, hidden])
    dense = {
        "type": "dense",
        "activation": "tanh" if net.output_tanh else "",
        "shape": [None, None, 1],
        "weights": [_lists(net.head.weight.T), _lists(net.head.bias)],
    }
    return [recurrent, dense]


def rtneural_document(net: nn.Module, metadata: ExportMetadata) -> dict:
    return {"in_shape": [None, None, 1 + net.num_knobs], "layers": keras_layers(net), "nablafx": metadata.to_dict()}


def aidax_document(net: nn.Module, metadata: ExportMetadata) -> dict:
    document = {
        "in_shape": [None, None, 1 + net.num_knobs],
        "in_skip": int(net.residual),
        "in_gain": 0.0,
        "out_gain": 0.0,
        "layers": keras_layers(net),
        "metadata": {
            "name": metadata.name,
            "samplerate": metadata.sample_rate,
            "author": metadata.author,
            "esr": metadata.val_esr,
            "knobs": metadata.knob_names,
            "description": metadata.summary(),
        },
        "nablafx": metadata.to_dict(),
    }
    return document


def write(net: nn.Module, metadata: ExportMetadata, path: Path) -> None:
    Path(path).write_text(json.dumps(rtneural_document(net, metadata)))


def write_aidax(net: nn.Module, metadata: ExportMetadata, path: Path) -> None:
    Path(path).write_text(json.dumps(aidax_document(net, metadata)))


# --- NumPy runner of the documents -----------------------------------------------------------

def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def run_keras_json(document: dict, x: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    """Run an RTNeural/AIDA-X document on ``x`` (1-D) with constant ``knobs``, from zero state."""
    recurrent, dense = document["layers"]
    kernel, recurrent_kernel, bias = (np.asarray(w, dtype=np.float64) for w in recurrent["weights"])
    hidden = recurrent["shape"][-1]
    inputs = np.concatenate([x[:, None], np.broadcast_to(knobs, (len(x), len(knobs)))], axis=1).astype(np.float64)
    h, c = np.zeros(hidden), np.zeros(hidden)
    states = np.empty((len(x), hidden))
    for t, step in enumerate(inputs):
        if recurrent["type"] == "lstm":
            i, f, g, o = np.split(step @ kernel + h @ recurrent_kernel + bias, 4)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:
            xz, xr, xh = np.split(step @ kernel + bias[0], 3)
            hz, hr, hh = np.split(h @ recurrent_kernel + bias[1], 3)
            z, r = _sigmoid(xz + hz), _sigmoid(xr + hr)
            h = z * h + (1 - z) * np.tanh(xh + r * hh)
        states[t] = h
    dense_kernel, dense_bias = (np.asarray(w, dtype=np.float64) for w in dense["weights"])
    y = (states @ dense_kernel)[:, 0] + dense_bias[0]
    if document.get("in_skip"):
        y = y + x
    return np.tanh(y) if dense["activation"] == "tanh" else y


def verify(path: Path, net: nn.Module, x: np.ndarray, knobs: np.ndarray) -> dict[str, float]:
    document = json.loads(Path(path).read_text())
    return {"NumPy runner of the file": max_error(run_keras_json(document, x, knobs), reference_output(net, x, knobs))}
