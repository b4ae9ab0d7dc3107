"""Model families as the exporters see them, and what keeps a model out of a traced graph."""

from __future__ import annotations

from torch import nn

#: Families each format takes (shown by ``nablafx export --help``).
STREAMING_FAMILIES = "tcn, gcn, s4, wavenet, lstm, gru (every conditioning method); not graybox"


def model_family(net: nn.Module) -> str:
    """Short family name recorded in every export: ``tcn``, ``gcn``, ``s4``, ``wavenet``,
    ``lstm``/``gru`` (the recurrent model), ``graybox``, or the class name in lower case."""
    name = type(net).__name__
    if name == "RNN":
        return net.rnn.mode.lower()  # nn.LSTM / nn.GRU name their cell
    if name == "GrayBoxChain":
        return "graybox"
    return name.lower()


def untraceable_reason(net: nn.Module) -> str | None:
    """Why the streaming step of ``net`` cannot become a traced graph, or None when it can.

    Tracing records the tensor operations of one call; that graph is valid for every
    block size only when the Python code around them does not branch on the data or on
    how many samples were seen so far. Block-rate control does, and is swapped for a
    scripted equivalent before tracing (:mod:`nablafx.export.block_rate`); what remains
    out of reach is listed here.
    """
    if model_family(net) == "graybox":
        return (
            "gray-box chains run their IIR recursions in numba on the host (outside torch) and "
            "their dynamic controllers decide per chunk in Python, so no TorchScript/ONNX graph can hold them"
        )
    return None
