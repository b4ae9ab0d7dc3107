"""ONNX export: the streaming step with its state as explicit graph inputs and outputs.

Graph (batch 1, mono; ``L`` is a dynamic axis, any length >= 1 per call)::

    inputs : block (1, 1, L) float32, [knobs (1, num_knobs) float32,] state_0 ... state_{n-1}
    outputs: out (1, 1, L) float32, state_0_next ... state_{n-1}_next

A host starts with every ``state_i`` zero (silence; shapes and dtypes are the graph's input
declarations) and feeds each ``state_i_next`` back as ``state_i`` on the next call. The
``knobs`` input exists only for models with knobs. ``metadata_props`` holds ``nablafx``
(the export metadata as JSON), ``latency``, ``sample_rate`` and ``knob_names``.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. The dynamo
exporter (torch 2.11's default) was tried: it fixes nn.LSTM's sequence length to the
example's (no dynamic block length for recurrent models), is slower to export and needs
``onnxscript``; the TorchScript-based one keeps every block length dynamic. Neither can
express S4, whose state-space layers compute in complex arithmetic (ONNX has no complex
tensors), so S4 is refused. Block-rate control (TFiLM/TTFiLM/TVFiLM, the RNN's tvc input)
is refused too: its compiled bookkeeping (:mod:`nablafx.controllers.block_rate`) converts to ONNX
If/Loop nodes with data-dependent shapes that onnxruntime rejects.

Dilated causal convolutions are exported as ONNX ``Conv`` with dilations: the exported copy
of every :class:`~nablafx.models.causal_conv.CausalConv1d` has its tap gathering switched
off (``gather_limit = 0``), and a WaveNet computes channel-major
(:attr:`~nablafx.models.wavenet.WaveNet.channel_major`), NAM's own form, whose dilated
``Conv`` nodes onnxruntime runs faster than the gathered taps PyTorch prefers.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nablafx.core import feed_blocks
from nablafx.export.check import IRREGULAR_BLOCKS, max_error, reference_output
from nablafx.export.errors import UnsupportedExport
from nablafx.export.metadata import ExportMetadata
from nablafx.export.streaming import trace_step
from nablafx.controllers.block_rate import BlockRateLSTM
from nablafx.models.causal_conv import CausalConv1d
from nablafx.models.wavenet import WaveNet

OPSET = 17
ONNX_FAMILIES = "tcn, gcn, wavenet, lstm, gru (conditioning none, film or knobs); not s4, graybox"


def _require_runtime():
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise UnsupportedExport(
            f"ONNX export needs the onnx and onnxruntime packages ({error.name} is missing): "
            "pip install onnx onnxruntime"
        ) from None
    return onnx, onnxruntime


def check(net: nn.Module, metadata: ExportMetadata) -> None:
    if metadata.family == "graybox":
        raise UnsupportedExport(
            "ONNX export cannot take gray-box chains: their recursions and dynamic controllers run as "
            "TorchScript loops per sample or chunk, which the ONNX exporter cannot convert; export the chain "
            "to TorchScript or Neutone instead"
        )
    block_rate = [name for name, module in net.named_modules() if isinstance(module, BlockRateLSTM)]
    if block_rate:
        raise UnsupportedExport(
            f"ONNX export cannot take block-rate control ({block_rate[0]}: TFiLM/TTFiLM/TVFiLM or the RNN's "
            "tvc input): its per-chunk bookkeeping becomes ONNX If/Loop nodes with data-dependent shapes that "
            "onnxruntime rejects; export this model to TorchScript or Neutone instead"
        )
    if metadata.family == "s4":
        raise UnsupportedExport(
            "ONNX export cannot take S4: its state-space layers compute in complex arithmetic and ONNX "
            "has no complex tensors; export S4 to TorchScript or Neutone instead"
        )
    _require_runtime()


def write(net: nn.Module, metadata: ExportMetadata, path: Path) -> None:
    onnx, _ = _require_runtime()
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, CausalConv1d):
            module.gather_limit = 0
        if isinstance(module, WaveNet):
            module.channel_major = True
    step, state, example = trace_step(net, takes_knobs=net.num_knobs > 0)
    state_names = [f"state_{i}" for i in range(len(state))]
    input_names = ["block"] + (["knobs"] if net.num_knobs else []) + state_names
    output_names = ["out"] + [f"{name}_next" for name in state_names]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the check is the real test
        torch.onnx.export(
            step, example, str(path), dynamo=False, opset_version=OPSET,
            input_names=input_names, output_names=output_names,
            dynamic_axes={"block": {2: "length"}, "out": {2: "length"}},
        )
    model = onnx.load(str(path))
    properties = {
        "nablafx": json.dumps(metadata.to_dict()),
        "latency": str(metadata.latency),
        "sample_rate": str(metadata.sample_rate or 0),
        "knob_names": json.dumps(metadata.knob_names),
    }
    for key, value in properties.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


class OnnxStreamer:
    """Drives an exported graph with onnxruntime: zero state, then one ``run`` per block."""

    def __init__(self, path: str | Path, threads: int = 1):
        _, onnxruntime = _require_runtime()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.state_inputs = [i for i in self.session.get_inputs() if i.name.startswith("state_")]
        self.has_knobs = any(i.name == "knobs" for i in self.session.get_inputs())
        self.reset()

    def reset(self) -> None:
        self.state = [np.zeros(i.shape, dtype=_numpy_dtype(i.type)) for i in self.state_inputs]

    def process(self, block: np.ndarray, knobs: np.ndarray | None = None) -> np.ndarray:
        feed = {"block": np.ascontiguousarray(block, dtype=np.float32).reshape(1, 1, -1)}
        if self.has_knobs:
            feed["knobs"] = np.asarray(knobs, dtype=np.float32).reshape(1, -1)
        feed.update({i.name: s for i, s in zip(self.state_inputs, self.state)})
        out, *self.state = self.session.run(None, feed)
        return out.reshape(-1)


def _numpy_dtype(onnx_type: str):
    return {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(double)": np.float64}[onnx_type]


def verify(path: Path, net: nn.Module, x: np.ndarray, knobs: np.ndarray,
           blocks: tuple[int, ...] = IRREGULAR_BLOCKS) -> dict[str, float]:
    """Stream with onnxruntime in one call and in ``blocks`` (cycled); errors against PyTorch."""
    streamer = OnnxStreamer(path)
    reference = reference_output(net, x, knobs)
    errors = {"one call": max_error(streamer.process(x, knobs), reference)}
    streamer.reset()
    errors[f"blocks {blocks}"] = max_error(feed_blocks(lambda b: streamer.process(b, knobs), x, blocks), reference)
    return errors
