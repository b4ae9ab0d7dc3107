"""Speed measurements in one unit: times real time.

``x real time = audio seconds / compute seconds``: 10x means the model needs a tenth of a
core to keep up (NAM's convention; higher is faster). Where a real-time factor is shown,
it is derived: ``RTF = 1 / x``. Inference is timed on the calling thread's CPU clock
(``time.thread_time``), which a busy machine disturbs less than the wall clock; training,
which runs on several threads, on the wall clock. Every timing streams or processes the
same seeded noise (:func:`example_signal`), with every knob at mid-travel
(:func:`mid_knobs`), since the values change neither the work nor its cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

#: level of the benchmark noise: loud enough to drive every nonlinearity, well under full scale
NOISE_LEVEL = 0.3


@dataclass(frozen=True)
class Timing:
    """Seconds one call took on the calling thread's CPU clock and on the wall clock."""

    cpu: float
    wall: float


def best_time(fn: Callable[[], object], repeats: int = 1) -> Timing:
    """The fastest of ``repeats`` calls of ``fn`` (each clock's minimum)."""
    best = Timing(float("inf"), float("inf"))
    for _ in range(max(1, repeats)):
        cpu, wall = time.thread_time(), time.perf_counter()
        fn()
        best = Timing(min(best.cpu, time.thread_time() - cpu), min(best.wall, time.perf_counter() - wall))
    return best


def example_signal(batch: int, length: int, seed: int = 0) -> Tensor:
    """``(batch, 1, length)`` Gaussian noise at :data:`NOISE_LEVEL`, the same for a seed."""
    generator = torch.Generator().manual_seed(seed)
    return NOISE_LEVEL * torch.randn(batch, 1, length, generator=generator)


def mid_knobs(num_knobs: int, batch: int = 1) -> Tensor | None:
    """``(batch, num_knobs)`` knobs at 0.5, or None for a model without knobs."""
    return torch.full((batch, num_knobs), 0.5) if num_knobs else None


def times_real_time(process: Callable[[np.ndarray], object], sample_rate: int, block_size: int,
                    seconds: float = 2.0, budget: float = 3.0, repeats: int = 1,
                    warm_up: int = 3) -> Timing:
    """Stream :func:`example_signal` in ``block_size`` blocks through ``process``, as a host does.

    ``warm_up`` blocks go first, untimed (allocations, first-call specialisation). Each of
    ``repeats`` runs then streams ``seconds`` of audio in whole blocks, stopping early once
    it has taken ``budget`` seconds of wall time (slow models on a loaded machine); ``process``
    keeps its state across runs. Returns the best run's audio seconds over CPU and over wall
    seconds, as a :class:`Timing` of speeds (x real time).
    """
    total = max(int(seconds * sample_rate) // block_size, 1)
    blocks = example_signal(1, (total + warm_up) * block_size).numpy().reshape(-1, block_size)
    for block in blocks[:warm_up]:
        process(block)
    best = Timing(0.0, 0.0)
    for _ in range(max(1, repeats)):
        done = 0

        def stream() -> None:
            nonlocal done
            start = time.perf_counter()
            for block in blocks[warm_up:]:
                process(block)
                done += 1
                if time.perf_counter() - start > budget:
                    break

        timing = best_time(stream)
        audio = done * block_size / sample_rate
        best = Timing(max(best.cpu, audio / timing.cpu), max(best.wall, audio / timing.wall))
    return best
