"""Checks of a dataset before training: every problem of every file, in one report.

Where training stops at the first bad file, :func:`check_dataset` walks a whole
ToneTwist-layout folder and reports each file as OK, WARN or ERROR:

- ERROR (training would refuse it): unreadable, not mono, NaN/inf, silent, a target
  without its dry file, input and target at different sample rates or lengths;
- WARN (training runs, but the model learns something wrong): clipping, DC offset,
  input/target latency, sample rates that differ across the dataset, a target that
  barely correlates with its input.

Latency is the lag of the cross-correlation peak. Offsets up to 0.25 ms are reported but
not warned about: the filters inside an effect shift the peak by a sample or two even on
perfectly aligned recordings, while a recording chain's latency is a millisecond or more.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft

from nablafx.data.audio import MONO_FIX, first_nonfinite_index, is_silent, read_audio
from nablafx.data.dataset import SILENT_SEGMENT_THRESHOLD
from nablafx.data.errors import DataError
from nablafx.data.tonetwist import SPLITS, Pair, device_folders, find_dry_folder, scan_split

LEVELS = ("OK", "WARN", "ERROR")  # in increasing severity

# Samples at least this close to full scale count as hitting the converter's limit.
CLIP_LEVEL = 0.999
# Clipping shows as flat tops: runs of identical samples at the peak. Shorter runs happen
# by chance at a smooth waveform's crest.
MIN_CLIP_RUN = 3
DC_LIMIT = 0.01
# Re-amping and interface round trips delay the target by up to a few hundred ms.
MAX_LATENCY_SECONDS = 1.0
# Latency is estimated on this much audio: enough for a clear peak, fast on long files.
LATENCY_WINDOW_SECONDS = 30.0
# The correlation peak of a sample-aligned pair sits a few samples off zero when the
# effect filters (the phase of a high-pass leads); recording latencies are >= ~1 ms.
LATENCY_TOLERANCE_SECONDS = 0.25e-3
# Below this normalised correlation the target hardly follows the input: wrong pairing?
MIN_CORRELATION = 0.1


@dataclass
class Entry:
    """The findings about one file (a dry file, or a target together with its pair checks)."""

    subject: str
    notes: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    details: dict[str, Any] = field(default_factory=dict)  # measured values, e.g. "latency"

    @property
    def level(self) -> str:
        return max((level for level, _ in self.notes), key=LEVELS.index, default="OK")

    def add(self, level: str, text: str) -> None:
        self.notes.append((level, text))

    def __str__(self) -> str:
        return f"{self.level:<5} {self.subject}: " + "; ".join(text for _, text in self.notes)


@dataclass
class Report:
    """Result of :func:`check_dataset`: one entry per file and a summary."""

    root: Path
    by_subject: dict[str, Entry] = field(default_factory=dict)  # in the order files were met
    sample_rates: Counter = field(default_factory=Counter)  # rate -> number of files
    pairs_checked: int = 0

    @property
    def entries(self) -> list[Entry]:
        return list(self.by_subject.values())

    @property
    def ok(self) -> bool:
        """False when any file has an error (training on this dataset would fail)."""
        return not self.errors

    @property
    def errors(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.level == "ERROR"]

    @property
    def warnings(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.level == "WARN"]

    def entry(self, subject: str) -> Entry:
        """The entry of a file, by its path relative to the root; created when new."""
        return self.by_subject.setdefault(subject, Entry(subject))

    def summary(self) -> str:
        rates = ", ".join(f"{rate} Hz ({n} files)" for rate, n in sorted(self.sample_rates.items()))
        return (
            f"{len(self.entries)} file(s), {self.pairs_checked} pair(s): {len(self.errors)} with errors, "
            f"{len(self.warnings)} with warnings; sample rate {rates or 'unknown'}"
        )

    def __str__(self) -> str:
        lines = [f"dataset check of {self.root}"]
        lines += [f"  {entry}" for entry in self.entries]
        lines.append(("OK: " if self.ok else "FAILED: ") + self.summary())
        return "\n".join(lines)


def check_dataset(root: str | PathLike, device: str | None = None) -> Report:
    """Check every pair of a ToneTwist-layout dataset (all devices, or only ``device``)."""
    report = Report(Path(root))
    try:
        find_dry_folder(root)
        devices = [device] if device else device_folders(root)
    except DataError as error:
        report.entry(str(root)).add("ERROR", _describe(error))
        return report
    if not devices:
        report.entry(str(root)).add(
            "ERROR", "no device folders (folders with trainval/ or test/ inside) next to the dry folder"
        )
    inputs: dict[Path, np.ndarray | None] = {}  # dry files serve many targets: check them once
    for name in devices:
        # A device without any split folder still gets scanned once, to report why.
        splits = [split for split in SPLITS if (Path(root) / name / split).is_dir()] or [SPLITS[0]]
        for split in splits:
            _check_split(report, name, split, inputs)
    _check_sample_rates(report)
    return report


def _check_split(report: Report, device: str, split: str, inputs: dict[Path, np.ndarray | None]) -> None:
    try:
        scan = scan_split(report.root, device, split)
    except DataError as error:
        report.entry(f"{device}/{split}").add("ERROR", _describe(error))
        return
    for target, dry in scan.orphan_targets:
        report.entry(_relative(report, target)).add(
            "ERROR", f"no dry file: expected {_relative(report, dry)} (fix: add it or remove the target)"
        )
    if not scan.pairs and not scan.orphan_targets:
        report.entry(f"{device}/{split}").add("WARN", "no target files (<SETTING>/*.target.wav)")
    for pair in scan.pairs:
        if pair.input_path not in inputs:
            inputs[pair.input_path] = _check_file(report, pair.input_path)
        _check_pair(report, pair, inputs[pair.input_path])


def _check_pair(report: Report, pair: Pair, x: np.ndarray | None) -> None:
    """Check a target file, then how it lines up with its (already checked) input."""
    entry = report.entry(_relative(report, pair.target_path))
    y = _check_file(report, pair.target_path)
    report.pairs_checked += 1
    if x is None or y is None:
        if x is None:
            entry.add("ERROR", f"its input {_relative(report, pair.input_path)} is unusable (see above)")
        return
    input_rate = report.entry(_relative(report, pair.input_path)).details["sample_rate"]
    target_rate = entry.details["sample_rate"]
    if input_rate != target_rate:
        entry.add("ERROR", f"at {target_rate} Hz but its input at {input_rate} Hz (fix: export both at one)")
        return
    if x.size != y.size:
        entry.add(
            "ERROR",
            f"{y.size} samples but its input {x.size} (fix: align, then crop the target to the input)",
        )
    _check_latency(entry, x, y, target_rate)


def _check_file(report: Report, path: Path) -> np.ndarray | None:
    """Check one file; return its mono samples, or None when it is unusable."""
    entry = report.entry(_relative(report, path))
    try:
        samples, sample_rate = read_audio(path)
    except DataError as error:
        entry.add("ERROR", _describe(error))
        return None
    entry.details["sample_rate"] = sample_rate
    report.sample_rates[sample_rate] += 1
    if samples.shape[0] != 1:
        entry.add("ERROR", f"{samples.shape[0]} channels, models are mono (fix: {MONO_FIX})")
        return None
    x = samples[0]
    bad_index = first_nonfinite_index(samples)
    if bad_index is not None:
        entry.add("ERROR", f"sample {bad_index} is {x[bad_index]} (fix: re-render or re-export it)")
        return None
    if is_silent(samples):
        entry.add("ERROR", "silent (fix: check the recording chain and record it again)")
        return None
    peak = float(np.max(np.abs(x)))
    duration = x.size / sample_rate
    entry.add("OK", f"{sample_rate} Hz, {duration:.1f} s, peak {20 * math.log10(peak):.1f} dBFS")
    _check_clipping(entry, x, peak)
    _check_dc(entry, x)
    return x


def _check_clipping(entry: Entry, x: np.ndarray, peak: float) -> None:
    clipped, runs = clipped_samples(x, peak)
    entry.details["clipped"] = clipped
    if clipped:
        entry.add(
            "WARN",
            f"clipped: {clipped} samples in {runs} flat tops at |x| = {peak:.4f} "
            "(fix: record again with less gain; the model would learn the clipping)",
        )


def clipped_samples(x: np.ndarray, peak: float | None = None) -> tuple[int, int]:
    """Samples in flat tops, and how many flat tops: runs of >= 3 identical samples at the peak.

    "At the peak" means ``|x| >= min(0.999, peak)``: full-scale clipping, and also audio
    that clipped and was then scaled down (its flat tops sit at its own peak).
    """
    peak = float(np.max(np.abs(x))) if peak is None else peak
    at_top = np.abs(x) >= min(CLIP_LEVEL, peak)
    continues_run = at_top[1:] & at_top[:-1] & (x[1:] == x[:-1])
    edges = np.flatnonzero(np.diff(np.concatenate(([0], continues_run.astype(np.int8), [0]))))
    run_lengths = edges[1::2] - edges[::2] + 1  # n continuations join n + 1 samples
    long_runs = run_lengths[run_lengths >= MIN_CLIP_RUN]
    return int(long_runs.sum()), int(long_runs.size)


def _check_dc(entry: Entry, x: np.ndarray) -> None:
    offset = float(np.mean(x, dtype=np.float64))
    entry.details["dc_offset"] = offset
    if abs(offset) > DC_LIMIT:
        entry.add(
            "WARN",
            f"DC offset {offset:+.4f} "
            "(fix: remove it with a high-pass, e.g. `sox in.wav out.wav highpass 10`)",
        )


def _check_latency(entry: Entry, x: np.ndarray, y: np.ndarray, sample_rate: int) -> None:
    max_lag = round(MAX_LATENCY_SECONDS * sample_rate)
    start = _first_active_sample(x)
    start = max(0, start - max_lag)  # leave room for a target that trails the input
    window = slice(start, start + round(LATENCY_WINDOW_SECONDS * sample_rate))
    latency, correlation = estimate_latency(x[window], y[window], max_lag)
    entry.details["latency"] = latency
    if abs(correlation) < MIN_CORRELATION:
        entry.add(
            "WARN",
            f"hardly correlates with its input (r = {correlation:.2f}); is it the right recording?",
        )
        return
    polarity = ", inverted polarity" if correlation < 0 else ""
    tolerance = math.floor(LATENCY_TOLERANCE_SECONDS * sample_rate)
    if latency == 0:
        entry.add("OK", f"aligned with its input (latency 0{polarity})")
        return
    if abs(latency) <= tolerance:
        entry.add(
            "OK",
            f"aligned with its input (correlation peak at {latency:+d} samples{polarity}: within "
            f"±{tolerance}, the phase of the effect's filters rather than a recording delay)",
        )
        return
    direction = "trails" if latency > 0 else "leads"
    entry.add(
        "WARN",
        f"latency: target {direction} its input by {abs(latency)} samples "
        f"({1000 * abs(latency) / sample_rate:.2f} ms{polarity}) "
        f"(fix: shift the target {'earlier' if latency > 0 else 'later'} by {abs(latency)} samples "
        "to re-align it, then crop it to the input's length)",
    )


def estimate_latency(x: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Samples by which ``y`` trails ``x`` (negative: leads), within ``±max_lag``.

    Also returns the normalised correlation at that lag (sign = polarity). Both signals
    are first-differenced, a high-pass that keeps rumble and DC offset from dominating
    the cross-correlation, which is computed with FFTs.
    """
    x = np.diff(x.astype(np.float64))
    y = np.diff(y.astype(np.float64))
    length = min(x.size, y.size)
    x, y = x[:length], y[:length]
    max_lag = min(max_lag, length - 1)
    size = scipy.fft.next_fast_len(length + max_lag)  # zero padding: no wrap-around within ±max_lag
    correlation = scipy.fft.irfft(np.conj(scipy.fft.rfft(x, size)) * scipy.fft.rfft(y, size), size)
    lags = np.concatenate((np.arange(max_lag + 1), np.arange(-max_lag, 0)))
    values = np.concatenate((correlation[: max_lag + 1], correlation[size - max_lag :]))
    best = int(np.argmax(np.abs(values)))
    norm = np.linalg.norm(x) * np.linalg.norm(y)
    return int(lags[best]), float(values[best] / norm) if norm > 0 else 0.0


def _check_sample_rates(report: Report) -> None:
    if len(report.sample_rates) > 1:
        report.entry(str(report.root)).add(
            "WARN",
            "files use different sample rates "
            f"({', '.join(f'{rate} Hz' for rate in sorted(report.sample_rates))}); training resamples "
            "them to the model's rate (fix: export everything at the rate it was recorded at)",
        )


def _first_active_sample(x: np.ndarray) -> int:
    active = np.flatnonzero(np.abs(x) >= SILENT_SEGMENT_THRESHOLD)
    return int(active[0]) if active.size else 0


def _describe(error: DataError) -> str:
    return error.problem + (f" (fix: {error.fix})" if error.fix else "")


def _relative(report: Report, path: Path) -> str:
    try:
        return str(Path(path).relative_to(report.root))
    except ValueError:
        return str(path)
