"""The pieces of scripts/time_to_quality.py that decide its numbers: ESR, concatenation,
the train/validation split and the alignment of NAM-style 'valid' outputs. No training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "time_to_quality.py"


@pytest.fixture(scope="module")
def ttq():
    spec = importlib.util.spec_from_file_location("time_to_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_esr_of_scaled_signal_is_squared_scale_error(ttq):
    rng = np.random.default_rng(0)
    y = rng.standard_normal(10_000).astype(np.float32)
    assert ttq.esr(y, y) == 0.0
    assert ttq.esr(y, 0.5 * y) == pytest.approx(0.25, rel=1e-6)  # (1 - 0.5)^2
    assert ttq.esr(y, 1.1 * y) == pytest.approx(0.01, rel=1e-5)
    assert ttq.esr(y, np.zeros_like(y)) == pytest.approx(1.0)
    assert ttq.esr(y, -y) == pytest.approx(4.0, rel=1e-6)


def test_esr_is_over_the_concatenation_not_a_mean_of_files(ttq):
    loud, quiet = np.ones(100), 0.1 * np.ones(100)
    # quiet file predicted as silence (its own ESR 1), loud one exactly:
    # pooled = 100 * 0.01 / (100 + 100 * 0.01) = 1 / 101, not the mean 0.5.
    target, _ = ttq.concat_segments([loud, quiet])
    prediction, _ = ttq.concat_segments([loud, np.zeros(100)])
    assert ttq.esr(target, prediction) == pytest.approx(1 / 101, rel=1e-6)


def test_esr_rejects_mismatched_or_silent(ttq):
    with pytest.raises(ValueError):
        ttq.esr(np.ones(10), np.ones(9))
    with pytest.raises(ValueError):
        ttq.esr(np.zeros(10), np.zeros(10))


def test_concat_and_split_round_trip(ttq):
    parts = [np.arange(5, dtype=np.float32), np.arange(3, dtype=np.float32) + 10, np.array([7.0])]
    joined, bounds = ttq.concat_segments(parts)
    assert bounds == [0, 5, 8, 9]
    assert joined.dtype == np.float32
    np.testing.assert_array_equal(joined, [0, 1, 2, 3, 4, 10, 11, 12, 7])
    for a, b in zip(ttq.split_segments(joined, bounds), parts):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        ttq.split_segments(joined, [0, 5])


def test_train_val_split_takes_the_end_of_each_file(ttq):
    train, val = ttq.split_train_val([0, 1000, 3000], 0.1)
    assert train == [(0, 900), (1000, 2800)]
    assert val == [(900, 1000), (2800, 3000)]


def valid_fir(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """A causal model with receptive field len(h) that, like NAM's _forward, returns only
    the samples whose whole receptive field lies in its input (len(x) - len(h) + 1)."""
    return np.convolve(x, h, mode="valid")


def test_padding_for_receptive_field_aligns_every_sample(ttq):
    rng = np.random.default_rng(1)
    h = rng.standard_normal(7)  # receptive field 7
    x = rng.standard_normal(200).astype(np.float32)
    reference = np.convolve(x, h)[: len(x)]  # causal, silence before the start
    padded = ttq.pad_for_receptive_field(x, len(h))
    assert len(padded) == len(x) + len(h) - 1
    out = ttq.align_prediction(valid_fir(padded, h), len(x), len(h))
    assert len(out) == len(x)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    assert ttq.esr(reference, out) < 1e-10


def test_unpadded_valid_output_is_shifted_with_leading_zeros(ttq):
    rng = np.random.default_rng(2)
    h = rng.standard_normal(5)
    x = rng.standard_normal(100).astype(np.float32)
    reference = np.convolve(x, h)[: len(x)]
    out = ttq.align_prediction(valid_fir(x, h), len(x), len(h))
    assert len(out) == len(x)
    np.testing.assert_array_equal(out[:4], 0.0)  # no output existed there: counted as error
    np.testing.assert_allclose(out[4:], reference[4:], atol=1e-5)
    # a one-sample misalignment is detected as a large error, not hidden
    assert ttq.esr(reference[4:], np.roll(out, 1)[4:]) > 0.1


def test_align_rejects_other_lengths(ttq):
    with pytest.raises(ValueError):
        ttq.align_prediction(np.zeros(90), 100, 5)
    with pytest.raises(ValueError):
        ttq.pad_for_receptive_field(np.zeros(3), 0)


def test_max_time_string(ttq):
    assert ttq.max_time(180) == "00:00:03:00"
    assert ttq.max_time(20) == "00:00:00:20"
    assert ttq.max_time(12 * 60) == "00:00:12:00"
    assert ttq.max_time(90_061) == "01:01:01:01"
    with pytest.raises(ValueError):
        ttq.max_time(0)


def test_table_lists_every_family_and_budget(ttq):
    results = [
        {"family": "nam", "budget": "3 min", "test_esr": 0.0123, "steps": 150},
        {"family": "tcn-45-s-16", "budget": "3 min", "error": "boom"},
    ]
    table = ttq.format_table(results, ["tcn-45-s-16", "nam"], ["3 min", "6 min"])
    lines = table.splitlines()
    assert lines[0] == "| family | 3 min | 6 min |"
    assert lines[2] == "| tcn-45-s-16 | failed |  |"
    assert lines[3] == "| nam | 0.0123 (150 steps) |  |"
