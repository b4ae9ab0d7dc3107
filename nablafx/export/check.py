"""Checking an exported artefact against the PyTorch model on a test signal.

The test signal covers what an effect sees: a log sweep, a loud section that drives
nonlinearities hard, noise, an isolated click and silence. Streaming artefacts are run in
one call and in irregular blocks (1, 7, 64, 97, 512, 3 samples, repeated), so a single
pass exercises single-sample calls, odd lengths and long blocks with the state carried.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Largest absolute sample error an artefact may show on the test signal (audio in [-1, 1]).
DEFAULT_TOLERANCE = 1e-4

#: Block sizes taken in turn (:func:`nablafx.core.feed_blocks`) when checking a streaming artefact.
IRREGULAR_BLOCKS = (1, 7, 64, 97, 512, 3)


def check_signal(num_samples: int = 12_000, sample_rate: int = 48_000, seed: int = 0) -> np.ndarray:
    """A deterministic float32 test signal of ``num_samples`` samples in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    duration = max(t[-1], 1e-9)
    f0, f1 = 50.0, min(10_000.0, 0.45 * sample_rate)
    phase = 2 * np.pi * f0 * duration / np.log(f1 / f0) * (np.exp(t / duration * np.log(f1 / f0)) - 1)
    x = 0.5 * np.sin(phase)
    quarter = num_samples // 4
    x[quarter : 2 * quarter] *= 1.8  # loud: drives saturating models into their nonlinearity
    x[2 * quarter : 3 * quarter] += 0.2 * rng.standard_normal(quarter)
    x[3 * quarter :] = 0.0
    x[3 * quarter + quarter // 2] = 0.8  # an isolated click into silence: the impulse response tail
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def check_knobs(num_knobs: int) -> np.ndarray:
    """Knob values for the check: distinct, away from the ends of [0, 1]."""
    return np.linspace(0.3, 0.7, num_knobs, dtype=np.float32) if num_knobs else np.zeros(0, np.float32)


@torch.no_grad()
def reference_output(net: nn.Module, x: np.ndarray, knobs: np.ndarray | None, state=None) -> np.ndarray:
    """The PyTorch model on ``x`` (1-D) in one call, from ``state`` (None: silence)."""
    knob_tensor = torch.from_numpy(knobs).reshape(1, -1) if net.num_knobs else None
    y, _ = net(torch.from_numpy(x).reshape(1, 1, -1), knob_tensor, state)
    return y.reshape(-1).numpy()


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0
