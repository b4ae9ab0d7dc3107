"""Model families as the exporters see them."""

from __future__ import annotations

from torch import nn

#: Families each format takes (shown by ``nablafx export --help``).
STREAMING_FAMILIES = "tcn, gcn, s4, wavenet, lstm, gru (every conditioning method), graybox (every chain)"


def model_family(net: nn.Module) -> str:
    """Short family name recorded in every export: ``tcn``, ``gcn``, ``s4``, ``wavenet``,
    ``lstm``/``gru`` (the recurrent model), ``graybox``, or the class name in lower case."""
    name = type(net).__name__
    if name == "RNN":
        return net.rnn.mode.lower()  # nn.LSTM / nn.GRU name their cell
    if name == "GrayBoxChain":
        return "graybox"
    return name.lower()
