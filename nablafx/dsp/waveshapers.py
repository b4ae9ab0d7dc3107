"""Memoryless waveshapers ``y[n] = f(x[n])``.

- ``tanh``: ``tanh(x)``;
- ``hard``: ``min(max(x, -1), 1)`` (a clipper is the one place clamping is the effect);
- ``soft``: cubic soft clipper ``1.5 x - 0.5 x^3`` for ``|x| <= 1``, ``sign(x)`` beyond
  (continuous value and slope at ``|x| = 1``);
- rational: ``P(x) / Q(x)`` with ``Q(x) = 1 + sum_k |b_k x^k|`` (the "safe" Padé
  activation of Molina et al., ICLR 2020: Q >= 1, so no poles on the real line).
"""

from __future__ import annotations

import torch
from torch import Tensor


def hard_clip(x: Tensor) -> Tensor:
    return x.clamp(-1.0, 1.0)


def soft_clip(x: Tensor) -> Tensor:
    inside = x.clamp(-1.0, 1.0)
    return 1.5 * inside - 0.5 * inside**3


CLIPPERS = {"tanh": torch.tanh, "hard": hard_clip, "soft": soft_clip}


def powers(x: Tensor, degree: int) -> Tensor:
    """``[x^0, x^1, ..., x^degree]`` stacked on a new last axis."""
    return torch.stack([x**k for k in range(degree + 1)], dim=-1)


def rational(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    """Safe Padé function ``P(x) / (1 + sum_{k>=1} |b_k x^k|)``.

    ``numerator`` holds ``a_0..a_m`` and ``denominator`` holds ``b_1..b_n``.
    """
    p = powers(x, numerator.shape[-1] - 1) @ numerator
    q = 1 + (powers(x, denominator.shape[-1])[..., 1:] * denominator).abs().sum(-1)
    return p / q


def fit_rational(target, numerator_degree: int, denominator_degree: int, x_max: float,
                 num_points: int = 2001, iterations: int = 10) -> tuple[Tensor, Tensor]:
    """Least-squares fit of :func:`rational` to ``target`` on ``[-x_max, x_max]`` (float64).

    Sanathanan-Koerner iteration: minimise ``sum |P(x) - y Q(x)|^2 / Q_prev(x)^2``, which is
    linear in the coefficients, and re-weight by the previous denominator until the
    weighted linear problem matches the true least-squares problem. The linearised
    denominator ``1 + sum b_k x^k`` equals the safe ``1 + sum |b_k x^k|`` wherever every
    term is non-negative, which holds for odd targets such as tanh (the fit yields an
    even Q with positive coefficients); the final coefficients are used in the safe form.
    """
    x = torch.linspace(-x_max, x_max, num_points, dtype=torch.float64)
    y = target(x)
    px = powers(x, numerator_degree)
    qx = powers(x, denominator_degree)[:, 1:]
    weight = torch.ones_like(x)
    for _ in range(iterations):
        system = torch.cat([px, -y.unsqueeze(-1) * qx], dim=-1) / weight.unsqueeze(-1)
        solution = torch.linalg.lstsq(system, (y / weight).unsqueeze(-1)).solution.squeeze(-1)
        numerator, denominator = solution[: numerator_degree + 1], solution[numerator_degree + 1 :]
        weight = 1 + qx @ denominator
    return numerator, denominator
