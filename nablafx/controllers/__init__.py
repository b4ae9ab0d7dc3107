"""Controllers that produce processor controls in (0, 1): static, static-conditional, dynamic(-conditional),
and the block-rate LSTM control (:mod:`nablafx.controllers.block_rate`) that the dynamic ones and the
TFiLM family share.

``controls, state = controller(x, knobs, state)``; see :mod:`nablafx.controllers.base`.
"""

from nablafx.controllers.base import Controller
from nablafx.controllers.dynamic import DynamicController
from nablafx.controllers.static import StaticConditionalController, StaticController

__all__ = ["Controller", "DynamicController", "StaticConditionalController", "StaticController"]
