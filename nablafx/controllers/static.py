"""Static controllers: constant in time, learned directly or from the knobs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nablafx.controllers.base import Controller, logit, require_knobs
from nablafx.core import State


class StaticController(Controller):
    """A learned vector through a sigmoid (spec suffix ``.s``): ``controls = sigmoid(theta)``.

    ``trainable=False`` freezes the values (e.g. the low-pass fixed at 20 kHz in the chains).
    """

    def __init__(self, num_params: int, num_knobs: int = 0, init: list[float] | None = None, trainable: bool = True):
        super().__init__(num_params, num_knobs, init)
        self.logits = nn.Parameter(logit(self.init), requires_grad=trainable)

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        # Batch 1: the same values for every item (processors broadcast them).
        return torch.sigmoid(self.logits).to(x.dtype).view(1, -1, 1), None


class StaticConditionalController(Controller):
    """Knobs -> MLP (``num_layers`` linear layers of width ``hidden_size``) -> sigmoid (suffix ``.sc``).

    The last layer's bias starts at the logits of ``init`` and its weights near zero, so
    a fresh model starts at the processor defaults whatever the knobs.
    """

    def __init__(self, num_params: int, num_knobs: int, init: list[float] | None = None,
                 hidden_size: int = 16, num_layers: int = 3):
        super().__init__(num_params, num_knobs, init)
        require_knobs("static-conditional", num_knobs)
        sizes = [num_knobs] + [hidden_size] * (num_layers - 1) + [num_params]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i > 0:
                layers.append(nn.LeakyReLU(0.2))  # no dead units with a single knob input
            layers.append(nn.Linear(n_in, n_out))
        self.mlp = nn.Sequential(*layers)
        with torch.no_grad():
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.copy_(logit(self.init))

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_input(x, knobs)
        return torch.sigmoid(self.mlp(knobs.to(self.mlp[0].weight.dtype))).to(x.dtype).unsqueeze(-1), None
