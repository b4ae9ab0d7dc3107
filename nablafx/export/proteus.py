"""GuitarML / Proteus JSON (the older "SimpleRNN" format of Automated-GuitarAmpModelling).

Document::

    {"model_data": {"model": "SimpleRNN", "input_size": 1 + knobs, "skip": 0 | 1,
                    "output_size": 1, "unit_type": "LSTM" | "GRU", "num_layers": 1,
                    "hidden_size": H, "bias_fl": true},
     "state_dict": {"rec.weight_ih_l0", "rec.weight_hh_l0", "rec.bias_ih_l0",
                    "rec.bias_hh_l0", "lin.weight", "lin.bias"},   # PyTorch layout, nested lists
     "nablafx": {...export metadata...}}

The model is ``y = lin(rec(x)) (+ x if skip)``: our RNN with ``residual`` as ``skip`` and no
output tanh. The plugins fix the size: Proteus runs LSTM-40, NeuralPi LSTM-20 (other
sizes load only in players that read the size from the file), and input_size 1 for
snapshots or 1 + knobs for the conditioned ("capture a knob") models.
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
from nablafx.export.rtneural import check_recurrent

PLUGIN_SIZES = {"Proteus": 40, "NeuralPi": 20}
SUPPORTED = "lstm, gru (conditioning none or knobs, no output tanh; residual -> skip)"


def check(net: nn.Module, metadata: ExportMetadata) -> None:
    check_recurrent(net, metadata, "Proteus JSON")
    if net.output_tanh:
        raise UnsupportedExport(
            "the SimpleRNN of Proteus/GuitarML has no output tanh; train with output_tanh: false"
        )


def size_note(net: nn.Module) -> str | None:
    """A warning when no GuitarML plugin with a fixed size runs this hidden size."""
    hidden = net.rnn.hidden_size
    if hidden in PLUGIN_SIZES.values():
        return None
    sizes = ", ".join(f"{name} {net.rnn.mode}-{size}" for name, size in PLUGIN_SIZES.items())
    return f"note: fixed-size GuitarML plugins run {sizes}; this model has hidden size {hidden}"


def _lists(t: torch.Tensor) -> list:
    return t.detach().to(torch.float32).tolist()


def proteus_document(net: nn.Module, metadata: ExportMetadata) -> dict:
    rnn = net.rnn
    return {
        "model_data": {
            "model": "SimpleRNN",
            "input_size": 1 + net.num_knobs,
            "skip": int(net.residual),
            "output_size": 1,
            "unit_type": rnn.mode,
            "num_layers": 1,
            "hidden_size": rnn.hidden_size,
            "bias_fl": True,
        },
        "state_dict": {
            "rec.weight_ih_l0": _lists(rnn.weight_ih_l0),
            "rec.weight_hh_l0": _lists(rnn.weight_hh_l0),
            "rec.bias_ih_l0": _lists(rnn.bias_ih_l0),
            "rec.bias_hh_l0": _lists(rnn.bias_hh_l0),
            "lin.weight": _lists(net.head.weight),
            "lin.bias": _lists(net.head.bias),
        },
        "nablafx": metadata.to_dict(),
    }


def write(net: nn.Module, metadata: ExportMetadata, path: Path) -> None:
    Path(path).write_text(json.dumps(proteus_document(net, metadata)))


@torch.no_grad()
def run_proteus(document: dict, x: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    """Rebuild the SimpleRNN from the file with torch's own LSTM/GRU and run it on ``x``."""
    data, weights = document["model_data"], document["state_dict"]
    cell = {"LSTM": nn.LSTM, "GRU": nn.GRU}[data["unit_type"]]
    rec = cell(data["input_size"], data["hidden_size"], batch_first=True)
    rec.load_state_dict({k[len("rec."):]: torch.tensor(v) for k, v in weights.items() if k.startswith("rec.")})
    inputs = np.concatenate([x[:, None], np.broadcast_to(knobs, (len(x), len(knobs)))], axis=1)
    hidden, _ = rec(torch.from_numpy(inputs.astype(np.float32))[None])
    y = hidden[0] @ torch.tensor(weights["lin.weight"]).T + torch.tensor(weights["lin.bias"])
    y = y[:, 0].numpy()
    return y + x if data["skip"] else y


def verify(path: Path, net: nn.Module, x: np.ndarray, knobs: np.ndarray) -> dict[str, float]:
    document = json.loads(Path(path).read_text())
    rebuilt = run_proteus(document, x, knobs)
    return {"file rebuilt as torch LSTM/GRU": max_error(rebuilt, reference_output(net, x, knobs))}
