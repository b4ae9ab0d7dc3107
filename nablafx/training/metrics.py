"""Per-example audio metrics, averaged over the batch (so they do not depend on batch size)."""

from __future__ import annotations

from torch import Tensor

_EPS = 1e-8


def esr(y_hat: Tensor, y: Tensor) -> Tensor:
    """Error-to-signal ratio ``sum((y - y_hat)^2) / sum(y^2)`` per example, batch mean."""
    error = (y - y_hat).pow(2).flatten(1).sum(-1)
    energy = y.pow(2).flatten(1).sum(-1)
    return (error / (energy + _EPS)).mean()


def mse(y_hat: Tensor, y: Tensor) -> Tensor:
    return (y - y_hat).pow(2).mean()


def l1(y_hat: Tensor, y: Tensor) -> Tensor:
    return (y - y_hat).abs().mean()
