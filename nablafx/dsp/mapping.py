"""Mapping of normalised controls in [0, 1] to physical units, by declared scale.

Controllers emit values in (0, 1); each processor parameter declares a range and a
scale, and these functions turn one into the other (the DDSP habit of keeping network
outputs bounded and putting the units into a fixed scale function):

- ``"linear"``: ``value = minimum + u * (maximum - minimum)`` — gains in dB, offsets;
- ``"log"``: ``value = minimum * (maximum / minimum) ** u`` — frequencies and Q, so
  equal steps of ``u`` are equal musical intervals / bandwidth ratios.
"""

from __future__ import annotations

import math

from torch import Tensor
from nablafx.errors import ConfigError

SCALES = ("linear", "log")


def check_range(name: str, minimum: float, maximum: float, scale: str) -> None:
    """Raise a clear error for a range no mapping can use."""
    if scale not in SCALES:
        raise ConfigError(f"parameter {name!r}: unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")
    if not minimum < maximum:
        raise ConfigError(f"parameter {name!r}: minimum ({minimum}) must be smaller than maximum ({maximum})")
    if scale == "log" and minimum <= 0:
        raise ConfigError(f"parameter {name!r}: a log scale needs a positive minimum, got {minimum}")


def denormalize(u: Tensor, minimum: float, maximum: float, scale: str) -> Tensor:
    """Map ``u`` in [0, 1] to [minimum, maximum] on the given scale."""
    if scale == "log":
        return minimum * (u * math.log(maximum / minimum)).exp()
    return minimum + u * (maximum - minimum)


def normalize(value: Tensor, minimum: float, maximum: float, scale: str) -> Tensor:
    """Inverse of :func:`denormalize`."""
    if scale == "log":
        return (value / minimum).log() / math.log(maximum / minimum)
    return (value - minimum) / (maximum - minimum)
