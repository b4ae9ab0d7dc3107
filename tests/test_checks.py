"""Dataset checks: clipping, DC offset, latency, broken files, and the `check` command."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile

from nablafx.commands import check as check_command
from nablafx.data.checks import check_dataset, clipped_samples, estimate_latency

SR = 16000


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.asarray(samples, dtype=np.float32), sample_rate, subtype="FLOAT")
    return path


def noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal(round(seconds * SR))


def delayed(x: np.ndarray, samples: int) -> np.ndarray:
    return np.concatenate((np.zeros(samples), x[: x.size - samples]))


def make_pair(root: Path, x: np.ndarray, y: np.ndarray, name: str = "gtr", setting: str = "G050"):
    """One dry file and one target in the ToneTwist layout; returns the target's path."""
    write_wav(root / "DRY" / "trainval" / f"{name}.input.wav", x)
    return write_wav(root / "Dev" / "trainval" / setting / f"{setting}.{name}.target.wav", y)


TARGET = "Dev/trainval/G050/G050.gtr.target.wav"
INPUT = "DRY/trainval/gtr.input.wav"


def test_clean_pair_is_ok_with_zero_latency(tmp_path):
    x = noise()
    make_pair(tmp_path, x, np.tanh(4 * x))
    report = check_dataset(tmp_path)
    assert report.ok and not report.warnings, str(report)
    assert report.entry(TARGET).details["latency"] == 0
    assert "aligned with its input (latency 0)" in str(report)
    assert report.sample_rates == {SR: 2} and report.pairs_checked == 1


def test_delayed_target_reports_its_latency(tmp_path):
    x = noise()
    make_pair(tmp_path, x, delayed(np.tanh(4 * x), 37))
    report = check_dataset(tmp_path, device="Dev")
    entry = report.entry(TARGET)
    assert entry.level == "WARN" and entry.details["latency"] == 37
    assert "trails its input by 37 samples (2.31 ms)" in str(report)
    assert "shift the target earlier by 37 samples" in str(report)
    assert report.ok  # a warning, not an error


def test_offset_of_a_sample_or_two_is_filter_phase_not_latency(tmp_path):
    x = noise()
    make_pair(tmp_path, x, delayed(x, 2))
    report = check_dataset(tmp_path)
    entry = report.entry(TARGET)
    assert entry.level == "OK" and entry.details["latency"] == 2
    assert "correlation peak at +2 samples" in str(entry)


def test_estimate_latency_sees_a_leading_target():
    x = noise()
    assert estimate_latency(delayed(x, 12), x, max_lag=100)[0] == -12


def test_clipping_is_detected(tmp_path):
    t = np.arange(SR) / SR
    clipped = np.clip(1.5 * np.sin(2 * np.pi * 110 * t), -1.0, 1.0) + 0.01 * noise()
    clipped = np.clip(clipped, -1.0, 1.0)
    make_pair(tmp_path, clipped, 0.5 * clipped)
    report = check_dataset(tmp_path)
    for subject in (INPUT, TARGET):  # flat tops at full scale, and at the scaled-down peak
        entry = report.entry(subject)
        assert entry.level == "WARN" and entry.details["clipped"] > 1000, str(report)
    assert "clipped:" in str(report)


def test_smooth_waveform_is_not_clipping():
    t = np.arange(SR) / SR
    assert clipped_samples(np.sin(2 * np.pi * 110 * t)) == (0, 0)


def test_dc_offset_is_detected(tmp_path):
    x = noise()
    make_pair(tmp_path, x, x + 0.05)
    report = check_dataset(tmp_path)
    entry = report.entry(TARGET)
    assert entry.level == "WARN" and entry.details["dc_offset"] == pytest.approx(0.05, abs=0.01)
    assert "DC offset +0.05" in str(report)
    assert report.entry(INPUT).level == "OK"


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda x: np.where(np.arange(x.size) == 99, np.nan, x), "sample 99 is nan"),
        (lambda x: np.zeros_like(x), "silent"),
        (lambda x: x[: x.size // 2], "8000 samples but its input 16000"),
        (lambda x: np.stack([x, x], axis=1), "2 channels"),
    ],
)
def test_broken_targets_are_errors(tmp_path, make_bad, message):
    x = noise()
    make_pair(tmp_path, x, make_bad(x))
    report = check_dataset(tmp_path)
    assert not report.ok
    assert report.entry(TARGET).level == "ERROR" and message in str(report.entry(TARGET))


def test_target_without_dry_file_and_sample_rate_mismatch(tmp_path):
    x = noise()
    make_pair(tmp_path, x, x)
    write_wav(tmp_path / "Dev" / "trainval" / "G050" / "G050.keys.target.wav", x)
    write_wav(tmp_path / "DRY" / "trainval" / "bass.input.wav", x)
    write_wav(tmp_path / "Dev" / "trainval" / "G050" / "G050.bass.target.wav", x, sample_rate=22050)
    report = check_dataset(tmp_path)
    assert "no dry file: expected DRY/trainval/keys.input.wav" in str(report)
    assert "at 22050 Hz but its input at 16000 Hz" in str(report)
    assert "files use different sample rates" in str(report)
    assert len(report.errors) == 2


def test_missing_root_and_device_are_errors(tmp_path):
    assert not check_dataset(tmp_path / "nowhere").ok
    make_pair(tmp_path, noise(), noise())
    report = check_dataset(tmp_path, device="Other")
    assert not report.ok and "available: Dev" in str(report)


def test_check_command_prints_the_report_and_sets_the_exit_status(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    check_command.add_arguments(parser)
    x = noise()
    make_pair(tmp_path, x, x)
    assert check_command.run(parser.parse_args([str(tmp_path)])) == 0
    assert "OK: 2 file(s), 1 pair(s)" in capsys.readouterr().out
    write_wav(tmp_path / "DRY" / "trainval" / "gtr.input.wav", np.zeros(SR))
    assert check_command.run(parser.parse_args([str(tmp_path), "--device", "Dev"])) == 1
    assert "FAILED" in capsys.readouterr().out
