"""SIREN: a small MLP with sine activations, and loading of its pretrained weights.

``h_1 = sin(w0 (W_1 x + b_1))``, ``h_l = sin(w0 (W_l h_{l-1} + b_l))``, ``y = W_L h + b_L``
(Sitzmann et al., "Implicit neural representations with periodic activation functions",
NeurIPS 2020). Initialisation from the paper: first layer ``U(-1/in, 1/in)``, later
layers ``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)``, so activations stay well distributed.

Pretrained weights live in the repository's ``weights/`` folder (shipped in the wheel as
``nablafx/weights``, a link to it) as plain ``state_dict`` files written by ``nablafx
pretrain`` and are loaded with ``weights_only=True``. They only initialise a new model:
rebuilding one from a checkpoint (:func:`skip_pretrained_init`) never reads them.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from nablafx.errors import MissingFileError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

_skip_pretrained_init = False


@contextlib.contextmanager
def skip_pretrained_init() -> Iterator[None]:
    """Build blocks without reading pretrained files, for weights that are loaded next anyway."""
    global _skip_pretrained_init
    previous, _skip_pretrained_init = _skip_pretrained_init, True
    try:
        yield
    finally:
        _skip_pretrained_init = previous


def resolve_weights(name: str) -> Path:
    """A weights file: an existing path as given, else a file name inside ``weights/``."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = WEIGHTS_DIR / name
    if candidate.is_file():
        return candidate
    raise MissingFileError(
        f"pretrained weights {name!r} not found (looked in {WEIGHTS_DIR}); create them with "
        "`nablafx pretrain nonlinearity` or `nablafx pretrain fir`, or pass weights=None for a random init"
    )


class Siren(nn.Module):
    """``in_features -> hidden (x sine_layers) -> out_features`` with sine activations."""

    def __init__(self, in_features: int = 1, hidden: int = 32, sine_layers: int = 3,
                 out_features: int = 1, w0: float = 30.0):
        super().__init__()
        self.w0 = w0
        sizes = [in_features] + [hidden] * sine_layers
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(hidden, out_features)
        with torch.no_grad():
            for n, layer in enumerate(self.hidden):
                bound = 1 / layer.in_features if n == 0 else math.sqrt(6 / layer.in_features) / w0
                layer.weight.uniform_(-bound, bound)
            bound = math.sqrt(6 / hidden) / w0
            self.out.weight.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = torch.sin(self.w0 * layer(x))
        return self.out(x)


def set_lr_scale(module: nn.Module, lr_scale: float) -> None:
    """Tag parameters for the training module's per-block learning rates (``p._optim``)."""
    for p in module.parameters():
        p._optim = {"lr_scale": lr_scale}


def load_weights(module: nn.Module, name: str | None) -> None:
    if name is not None and not _skip_pretrained_init:
        module.load_state_dict(torch.load(resolve_weights(name), map_location="cpu", weights_only=True))
