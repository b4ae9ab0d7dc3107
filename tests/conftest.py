"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one thread is faster, avoids oversubscribing a shared machine, and is how
    a plugin runs a model (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tanh_pairs(root, seconds: float, sample_rate: int = 48000):
    """Files a/b.{input,target}.wav: noise through tanh(3x), a learnable memoryless 'device'."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        x = (0.3 * rng.standard_normal(round(seconds * sample_rate))).astype(np.float32)
        sf.write(root / f"{name}.input.wav", x, sample_rate, subtype="FLOAT")
        sf.write(root / f"{name}.target.wav", np.tanh(3 * x), sample_rate, subtype="FLOAT")
    return root


def tanh_pairs_datamodule(root, **kwargs):
    """Train on pair a (last 10 % validates), test on pair b; 0.25 s segments, batch 4."""
    from nablafx.data.datamodule import EffectDataModule

    options = dict(segment_seconds=0.25, test_segment_seconds=0.5, batch_size=4)
    options.update(kwargs)
    return EffectDataModule(
        root=str(root),
        pairs={"train": [["a.input.wav", "a.target.wav"]], "test": [["b.input.wav", "b.target.wav"]]},
        **options,
    )
