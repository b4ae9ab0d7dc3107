"""Neural Amp Modeler ``.nam`` export (JSON) for the LSTM and WaveNet families.

Top level: ``version`` ("0.5.4", the legacy WaveNet keys every NAM loader reads),
``architecture`` ("LSTM" or "WaveNet"), ``config``, ``weights`` (one flat list),
``sample_rate`` (int) and ``metadata`` (``date`` {year, month, day, hour, minute,
second}; ``name``, ``modeled_by``, ``gear_make``, ``gear_model``, ``gear_type``,
``tone_type`` when given; ``training`` {``validation_esr``}; and ``nablafx``, the full
export metadata). ``loudness`` and ``gain`` are left out: NAM measures them on its own
reference recording, which nablafx does not ship; the plugin then skips loudness
normalisation for the model.

LSTM (our :class:`~nablafx.models.RNN` with ``cell="lstm"``, no knobs, no residual, no
output tanh -- NAM's LSTM has none of these). Config ``{input_size: 1, hidden_size: H,
num_layers: 1}``. Weights: ``[W_ih | W_hh]`` as one ``(4H, 1 + H)`` matrix, row-major,
gates i, f, g, o (PyTorch's order); ``b_ih + b_hh`` (4H); the initial hidden state (H)
and cell state (H); then the head weight (H) and bias (1). The initial state is the
model's state after :data:`BURN_IN` samples of silence, as NAM's own trainer writes it,
so the plugin starts settled instead of with the LSTM's start-up transient.
NAM runs a WaveNet as if silence preceded the input (see :func:`settled_state`); both
differ from nablafx's ``state=None`` (zero state) only in the first receptive field.

WaveNet (:class:`~nablafx.models.wavenet.WaveNet` without knobs): the layout is ours
already (see that module). Config ``{layers: [{input_size, condition_size, head_size,
channels, kernel_size, dilations, activation, gated, head_bias}, ...], head: null,
head_scale}``. Weights per layer array: rechannel; per layer conv weight
``(out, in, k)``, conv bias, input-mixer weight, 1x1 weight, 1x1 bias; head rechannel
weight (and bias); after all arrays ``head_scale``. Tensors are flattened in PyTorch
order, tap 0 being the oldest sample.

The export check (:func:`verify`) reads the written file back with neural-amp-modeler's own
loader (``nam.models.init_from_nam``, the ``dev``/tests dependency) and runs it; only where that
package is not installed does it fall back to :func:`load_nam`, nablafx's reader of both
layouts (the file's weights back into a nablafx model: it checks the layout round trip, not
NAM's runtime). The check's label says which one ran. :func:`load_nam` also reads ``.nam``
files written by NAM's trainer.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from nablafx.export.check import max_error, reference_output
from nablafx.export.errors import UnsupportedExport
from nablafx.export.families import model_family
from nablafx.export.metadata import ExportMetadata
from nablafx.errors import ConfigError
from nablafx.models.rnn import RNN
from nablafx.models.wavenet import LAYER_ARRAY_KEYS, WaveNet

VERSION = "0.5.4"
GEAR_TYPES = ("amp", "pedal", "pedal_amp", "amp_cab", "amp_pedal_cab", "preamp", "studio")
TONE_TYPES = ("clean", "overdrive", "crunch", "hi_gain", "fuzz")
#: Samples of silence run through an LSTM to find the initial state written to the file.
BURN_IN = 48_000
SUPPORTED = "lstm (no knobs, no residual, no output tanh), wavenet (no knobs)"


def check(net: nn.Module, metadata: ExportMetadata) -> None:
    family = metadata.family
    if family not in ("lstm", "wavenet"):
        raise UnsupportedExport(f"NAM has layouts for LSTM and WaveNet only ({SUPPORTED}); this model is a {family}")
    if net.num_knobs:
        raise UnsupportedExport(
            f"NAM's plugin has no knobs, but this model takes {net.num_knobs} ({', '.join(metadata.knob_names)}); "
            "export one snapshot model per setting, or use the torchscript/onnx/neutone/aidax formats"
        )
    if family == "lstm":
        reasons = []
        if net.residual:
            reasons.append("residual=true (NAM's LSTM output is the head alone; train with residual: false)")
        if net.output_tanh:
            reasons.append("output_tanh=true (NAM's LSTM has no output tanh; train with output_tanh: false)")
        if net.conditioning != "none":
            reasons.append(f"conditioning={net.conditioning!r} (NAM's LSTM takes the audio alone)")
        if reasons:
            raise UnsupportedExport(
                "this LSTM does not fit NAM's LSTM layout: " + "; ".join(reasons)
                + " -- cfg/model/plugin/nam-lstm-16.yaml is a ready config"
            )


@torch.no_grad()
def lstm_initial_state(net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h, c)`` of the LSTM after :data:`BURN_IN` samples of silence, each ``(1, 1, H)``."""
    _, (h, c) = net.rnn(torch.zeros(1, BURN_IN, 1))
    return h, c


def _flat(*tensors: torch.Tensor) -> list[float]:
    return torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors]).tolist()


def _lstm(net: nn.Module) -> tuple[dict, list[float]]:
    rnn = net.rnn
    h, c = lstm_initial_state(net)
    weights = _flat(
        torch.cat([rnn.weight_ih_l0, rnn.weight_hh_l0], dim=1),
        rnn.bias_ih_l0 + rnn.bias_hh_l0,
        h, c,
        net.head.weight, net.head.bias,
    )
    return {"input_size": 1, "hidden_size": rnn.hidden_size, "num_layers": 1}, weights


def _wavenet(net: nn.Module) -> tuple[dict, list[float]]:
    layers, tensors = [], []
    for array, spec in zip(net.arrays, net.layer_specs):
        layers.append({
            "input_size": array.rechannel.in_features,
            "condition_size": net.condition_size,
            "head_size": spec["head_size"],
            "channels": spec["channels"],
            "kernel_size": spec["kernel_size"],
            "dilations": list(spec["dilations"]),
            "activation": spec["activation"],
            "gated": spec["gated"],
            "head_bias": spec["head_bias"],
        })
        tensors.append(array.rechannel.weight)
        for layer in array.layers:
            tensors += layer.nam_tensors()
        tensors.append(array.head_rechannel.weight)
        if array.head_rechannel.bias is not None:
            tensors.append(array.head_rechannel.bias)
    tensors.append(net.head_scale)
    return {"layers": layers, "head": None, "head_scale": float(net.head_scale)}, _flat(*tensors)


def nam_document(net: nn.Module, metadata: ExportMetadata, *, gear_type: str | None = None,
                 tone_type: str | None = None, gear_make: str | None = None, gear_model: str | None = None) -> dict:
    """The ``.nam`` file as a dict (see module docstring)."""
    if metadata.sample_rate is None:
        raise UnsupportedExport("a .nam file must state its sample rate: pass --sample-rate (e.g. 48000)")
    for value, allowed, option in ((gear_type, GEAR_TYPES, "gear type"), (tone_type, TONE_TYPES, "tone type")):
        if value is not None and value not in allowed:
            raise UnsupportedExport(f"NAM {option} {value!r} is not one of {', '.join(allowed)}")
    architecture, (config, weights) = (
        ("LSTM", _lstm(net)) if metadata.family == "lstm" else ("WaveNet", _wavenet(net))
    )
    when = metadata.datetime
    user = {"name": metadata.name, "modeled_by": metadata.author, "gear_make": gear_make,
            "gear_model": gear_model, "gear_type": gear_type, "tone_type": tone_type}
    nam_metadata = {
        "date": {"year": when.year, "month": when.month, "day": when.day,
                 "hour": when.hour, "minute": when.minute, "second": when.second},
        # NAM's readers treat absent keys as unknown; a null where they expect a string or
        # number is not safe in every loader, so unknown values are left out.
        **{key: value for key, value in user.items() if value is not None},
        "training": {"validation_esr": metadata.val_esr} if metadata.val_esr is not None else {},
        "nablafx": metadata.to_dict(),
    }
    if architecture == "LSTM":
        nam_metadata["nablafx"]["extra"] = {"initial_state": f"after {BURN_IN} samples of silence"}
    return {
        "version": VERSION,
        "architecture": architecture,
        "config": config,
        "weights": weights,
        "sample_rate": int(metadata.sample_rate),
        "metadata": nam_metadata,
    }


def write(net: nn.Module, metadata: ExportMetadata, path: Path, **options) -> None:
    document = nam_document(net, metadata, **options)
    Path(path).write_text(json.dumps(document))


# --- reader -----------------------------------------------------------------------------

def load_nam(document: dict) -> tuple[nn.Module, object]:
    """A ``.nam`` document (LSTM or WaveNet layout, as NAM's trainer or :func:`write` writes it)
    as a nablafx model, with the state NAM's runtimes start it from (see :func:`settled_state`).

    The inverse of :func:`nam_document`: the flat weight list is read back into
    :class:`~nablafx.models.RNN` or :class:`~nablafx.models.wavenet.WaveNet`, which then run the
    file with nablafx's own forward pass."""
    architecture, config = document.get("architecture"), document.get("config", {})
    weights = torch.tensor(document.get("weights", []), dtype=torch.float32)
    if architecture == "LSTM":
        net, state = _load_lstm(config, _Reader(weights))  # the initial state the file holds
        return net.eval(), state
    if architecture == "WaveNet":
        net = _load_wavenet(config, _Reader(weights)).eval()
        return net, settled_state(net)
    raise ConfigError(f"no reader for NAM architecture {architecture!r}; nablafx reads LSTM and WaveNet")


class _Reader:
    """Hands out consecutive tensors of the flat weight list and checks it is used up exactly."""

    def __init__(self, weights: torch.Tensor):
        self.weights, self.position = weights, 0

    def take(self, *shape: int) -> torch.Tensor:
        size = int(np.prod(shape))
        if self.position + size > self.weights.numel():
            raise ConfigError(
                f"the .nam weight list is too short for its config ({self.weights.numel()} values); "
                "the file is truncated or its config does not match its weights"
            )
        values = self.weights[self.position : self.position + size]
        self.position += size
        return values.reshape(shape)

    def finish(self) -> None:
        if self.position != self.weights.numel():
            raise ConfigError(
                f"the .nam weight list holds {self.weights.numel()} values but its config uses "
                f"{self.position}; the config does not match its weights"
            )


def _unsupported(what: str) -> ConfigError:
    return ConfigError(f"this .nam file has {what}, which nablafx's reader does not take")


@torch.no_grad()
def _load_lstm(config: dict, read: _Reader):
    if config.get("input_size", 1) != 1 or config.get("num_layers", 1) != 1:
        raise _unsupported(f"an LSTM with input_size {config.get('input_size')} and "
                           f"num_layers {config.get('num_layers')} (nablafx reads 1 and 1)")
    hidden = int(config["hidden_size"])
    net = RNN(hidden_size=hidden, cell="lstm", residual=False, output_tanh=False)
    rnn = net.rnn
    matrix = read.take(4 * hidden, 1 + hidden)
    rnn.weight_ih_l0.copy_(matrix[:, :1])
    rnn.weight_hh_l0.copy_(matrix[:, 1:])
    rnn.bias_ih_l0.copy_(read.take(4 * hidden))
    rnn.bias_hh_l0.zero_()  # NAM stores the sum of both biases
    h, c = read.take(1, 1, hidden).clone(), read.take(1, 1, hidden).clone()
    net.head.weight.copy_(read.take(1, hidden))
    net.head.bias.copy_(read.take(1))
    read.finish()
    return net, (h, c)


@torch.no_grad()
def _load_wavenet(config: dict, read: _Reader):
    if config.get("head") is not None:
        raise _unsupported("a WaveNet head (config 'head' not null)")
    specs = config.get("layers", [])
    for i, spec in enumerate(specs):
        expected_input = 1 if i == 0 else specs[i - 1]["channels"]
        if spec.get("condition_size") != 1 or spec.get("input_size") != expected_input:
            raise _unsupported(
                f"WaveNet layer array {i} with input_size {spec.get('input_size')} and condition_size "
                f"{spec.get('condition_size')} (nablafx reads {expected_input} and 1: audio in, no knobs)"
            )
    net = WaveNet(layers=[{key: spec[key] for key in LAYER_ARRAY_KEYS if key in spec} for spec in specs],
                  head_scale=float(config.get("head_scale", 0.02)))
    for array in net.arrays:
        array.rechannel.weight.copy_(read.take(*array.rechannel.weight.shape))
        for layer in array.layers:
            mid, channels, k = layer.mix.out_features, layer.channels, layer.kernel_size
            conv = read.take(mid, channels, k)
            layer.mix.weight[:, : k * channels] = conv.permute(0, 2, 1).reshape(mid, k * channels)
            layer.mix.bias.copy_(read.take(mid))
            layer.mix.weight[:, k * channels :] = read.take(mid, layer.condition_size)
            layer.layer1x1.weight.copy_(read.take(channels, channels))
            layer.layer1x1.bias.copy_(read.take(channels))
        array.head_rechannel.weight.copy_(read.take(*array.head_rechannel.weight.shape))
        if array.head_rechannel.bias is not None:
            array.head_rechannel.bias.copy_(read.take(*array.head_rechannel.bias.shape))
    net.head_scale.copy_(read.take(1)[0])
    read.finish()
    return net


def settled_state(net: nn.Module):
    """The state NAM's runtimes start from: the model after a stretch of silence.

    An LSTM starts from the state stored in the file (:func:`lstm_initial_state`); a
    WaveNet is run by NAM with receptive-field - 1 samples of silence before the input,
    which fills every layer's history with the layer's response to silence (not zeros:
    biases make it non-zero)."""
    if model_family(net) == "lstm":
        return lstm_initial_state(net)
    with torch.no_grad():
        _, state = net(torch.zeros(1, 1, net.receptive_field - 1))
    return state


def nam_reader() -> tuple[Callable[[dict, np.ndarray], np.ndarray] | None, str]:
    """``(run, label)``: NAM's own loader when neural-amp-modeler imports, else ``(None, why)``."""
    try:
        from nam.models import init_from_nam
    except ImportError as error:
        return None, f"neural-amp-modeler not importable ({error})"
    try:
        version = importlib.metadata.version("neural-amp-modeler")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"

    @torch.no_grad()
    def run(document: dict, x: np.ndarray) -> np.ndarray:
        model = init_from_nam(document).eval()
        # pad_start: NAM's own convention, silence before the input (see settled_state)
        return np.asarray(model(torch.from_numpy(x), pad_start=True), dtype=np.float64).reshape(-1)

    return run, f"NAM's loader (neural-amp-modeler {version})"


def verify(path: Path, net: nn.Module, x: np.ndarray, knobs: np.ndarray) -> dict[str, float]:
    """Read the file back with NAM's own loader (:func:`nam_reader`), or with :func:`load_nam`
    where neural-amp-modeler is not installed, run it and compare with the PyTorch model started
    from the same settled state (:func:`settled_state`). The label names the reader used."""
    document = json.loads(Path(path).read_text())
    reference = reference_output(net, x, knobs, settled_state(net))
    run, label = nam_reader()
    if run is None:
        loaded, state = load_nam(document)
        output = reference_output(loaded, x, knobs, state)
        return {f"nablafx's reader of the file ({label})": max_error(output, reference)}
    return {label: max_error(run(document, x), reference)}
