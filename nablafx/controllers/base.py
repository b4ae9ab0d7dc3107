"""Controllers: produce a processor's normalised controls in (0, 1).

    controls, state = controller(x, knobs, state)

``x`` is the chain input (audio the dynamic controllers listen to), ``knobs`` the device
controls ``(batch, num_knobs)``; ``controls`` is ``(batch, num_params, 1)`` for static
controllers (batch 1 when the values do not depend on the batch item) or
``(batch, num_params, time)`` (audio rate) for dynamic ones. Every
controller ends in a sigmoid fed by an unbounded affine read-out, so the whole (0, 1)
range is reachable (the published dynamic controller put the sigmoid straight on an
LSTM output in (-1, 1) and could only reach 0.27-0.73).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nablafx.core import State, StreamModule
from nablafx.errors import ConfigError

# Initial values are clipped away from 0 and 1 so their logits stay finite.
INIT_MARGIN = 1e-6


def logit(values: list[float] | Tensor) -> Tensor:
    p = torch.as_tensor(values, dtype=torch.float32).clamp(INIT_MARGIN, 1 - INIT_MARGIN)
    return (p / (1 - p)).log()


class Controller(StreamModule):
    """Base: ``num_params`` outputs; ``init`` = initial normalised values (default 0.5 each)."""

    def __init__(self, num_params: int, num_knobs: int = 0, init: list[float] | None = None):
        super().__init__()
        if num_params < 1:
            raise ConfigError(f"{type(self).__name__} needs num_params >= 1")
        if init is not None and len(init) != num_params:
            raise ConfigError(f"{type(self).__name__}: init has {len(init)} values for {num_params} parameters")
        self.num_params = num_params
        self.num_knobs = num_knobs
        self.init = [0.5] * num_params if init is None else [float(v) for v in init]

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        raise NotImplementedError


def require_knobs(controller: str, num_knobs: int) -> None:
    if num_knobs < 1:
        raise ConfigError(f"a {controller} controller is conditioned on knobs: build it with num_knobs >= 1")


__all__ = ["Controller", "logit", "require_knobs"]
