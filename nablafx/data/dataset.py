"""Fixed-length windows of paired input/target recordings, preloaded into memory.

One class serves every source (ToneTwist folders, pairs listed in a config): it takes
``(input, target[, knobs])`` triples. Train and validation sets are cut from different
*time regions* of the same files (``region``), so neighbouring pieces of one recording
never land on both sides of the split.

A window is ``context + segment_length`` samples: the ``context`` samples before the
segment give the model the input history the first segment sample depends on (its
receptive field minus one, or a burn-in for recurrent models), and the loss is computed on
the segment alone. Context reaches before the region (it is input history, never scored)
and is zero before the start of the file, where the device too started from rest.

Windows are either the consecutive segments of each region (validation, test: every
sample scored once) or drawn at random positions by :class:`RandomWindowSampler`
(training: fresh windows every epoch, reproducible from a seed).

Under DDP both samplers shard by rank themselves: each rank gets its own windows, and no
window goes to two ranks (:class:`RandomWindowSampler` for training, :class:`ShardSampler`
for the consecutive segments of validation and test).
"""

from __future__ import annotations

import math
import warnings
from os import PathLike
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from nablafx.data.audio import audio_sample_rate, load_audio
from nablafx.data.errors import DataError
from nablafx.errors import ConfigError

# A segment whose input peaks below -80 dBFS holds no signal to learn from.
SILENT_SEGMENT_THRESHOLD = 1e-4

PairSource = Union[
    tuple[Union[str, PathLike], Union[str, PathLike]],
    tuple[Union[str, PathLike], Union[str, PathLike], Sequence[float]],
]


class SegmentDataset(Dataset):
    """Windows ``(x (1, C + L), y (1, C + L), knobs (K,))`` of input/target pairs, float32.

    ``C`` is :attr:`context` (0 unless set), ``L`` the segment length. Items are indexed
    by position (the consecutive segments) or by a ``(pair index, start sample)`` tuple,
    as :class:`RandomWindowSampler` yields them.

    Args:
        pairs: ``(input, target)`` or ``(input, target, knobs)`` per recording; every pair
            has the same number of knob values (K, possibly 0).
        sample_rate: rate of the model; files at another rate are resampled. The input
            and target of one pair must share a rate (a mismatch means one was exported
            wrongly, and resampling one side alone would hide it).
        segment_length: samples per segment (L).
        hop_length: samples between segment starts; defaults to ``segment_length``.
        region: ``(start, end)`` fractions of each file to cut segments from.
        skip_silent: drop segments whose input peaks below 1e-4; they teach nothing.
        audio_cache: audio already loaded at ``sample_rate``, by path; pass the same dict
            to the datasets cut from one set of files (train and validation regions) so
            each file is held in memory once. Filled with what this dataset loads.
    """

    def __init__(
        self,
        pairs: Sequence[PairSource],
        sample_rate: int,
        segment_length: int,
        hop_length: int | None = None,
        region: tuple[float, float] = (0.0, 1.0),
        skip_silent: bool = True,
        audio_cache: dict[Path, torch.Tensor] | None = None,
    ):
        hop_length = segment_length if hop_length is None else hop_length
        if segment_length < 1 or hop_length < 1:
            raise ConfigError(
                f"segment_length and hop_length must be >= 1, got {segment_length} and {hop_length}"
            )
        if not 0.0 <= region[0] < region[1] <= 1.0:
            raise ConfigError(f"region must satisfy 0 <= start < end <= 1, got {region}")
        if not pairs:
            raise ConfigError("SegmentDataset needs at least one (input, target) pair")
        self.sample_rate = sample_rate
        self.segment_length = segment_length
        self.context = 0
        self.skip_silent = skip_silent
        self.region = tuple(region)
        sources = [_as_source(pair) for pair in pairs]
        self.num_knobs = _common_knob_count(sources)

        # A dry file shared by many targets (one per setting) is loaded once.
        loaded = {} if audio_cache is None else audio_cache
        self._inputs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._knobs: list[torch.Tensor] = []
        self._segments: list[tuple[int, int]] = []  # (pair index, start sample)
        self.region_samples: list[tuple[int, int]] = []  # per pair: [first, last) sample of its region
        self.skipped_silent = 0
        for input_path, target_path, knobs in sources:
            x, y = _load_pair(input_path, target_path, sample_rate, loaded)
            starts = _segment_starts(x.shape[-1], segment_length, hop_length, self.region, input_path)
            pair_index = len(self._inputs)
            for start in starts:
                segment = x[:, start : start + segment_length]
                if skip_silent and segment.abs().max() < SILENT_SEGMENT_THRESHOLD:
                    self.skipped_silent += 1
                    continue
                self._segments.append((pair_index, start))
            self.region_samples.append(_region_samples(x.shape[-1], self.region))
            self._inputs.append(x)
            self._targets.append(y)
            self._knobs.append(torch.tensor(knobs, dtype=torch.float32).reshape(self.num_knobs))
        if not self._segments:
            silent = f" ({self.skipped_silent} skipped as silent)" if self.skipped_silent else ""
            raise DataError(
                f"no segments of {segment_length} samples in region {region[0]:g}-{region[1]:g} "
                f"of these files{silent}",
                ", ".join(sorted({str(input_path) for input_path, _, _ in sources})),
                "use shorter segments, a larger region (val_fraction), longer recordings, "
                "or keep silent segments with skip_silent=False",
            )

    def __len__(self) -> int:
        return len(self._segments)

    def target_power_per_setting(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each knob setting's mean target power over its recordings' regions: ``(settings (S, K), power (S,))``."""
        totals: dict[tuple[float, ...], list[float]] = {}
        for target, knobs, (first, last) in zip(self._targets, self._knobs, self.region_samples):
            region = target[:, first:last].double()
            total = totals.setdefault(tuple(knobs.tolist()), [0.0, 0])
            total[0] += float(region.pow(2).sum())
            total[1] += region.numel()
        settings = torch.tensor(list(totals), dtype=torch.float32).reshape(len(totals), self.num_knobs)
        return settings, torch.tensor([energy / max(count, 1) for energy, count in totals.values()])

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pair_index, start = index if isinstance(index, tuple) else self._segments[index]
        return (
            self.window(self._inputs[pair_index], start),
            self.window(self._targets[pair_index], start),
            self._knobs[pair_index],
        )

    def window(self, audio: torch.Tensor, start: int) -> torch.Tensor:
        """``audio[:, start - context : start + segment_length]``, zeros before sample 0."""
        first, end = start - self.context, start + self.segment_length
        if first >= 0:
            return audio[:, first:end]
        return torch.nn.functional.pad(audio[:, :end], (-first, 0))

    def is_silent(self, pair_index: int, start: int) -> bool:
        segment = self._inputs[pair_index][:, start : start + self.segment_length]
        return bool(segment.abs().max() < SILENT_SEGMENT_THRESHOLD)


class RandomWindowSampler(DistributedSampler):
    """Training windows at random positions, new ones every epoch, reproducible from a seed.

    Each of the ``num_windows`` windows picks a recording with probability proportional
    to its region's length, then a start sample uniformly inside the region (silent
    segments are redrawn when the dataset skips them). Lightning calls :meth:`set_epoch`
    before each epoch; the positions depend only on ``(seed, epoch)``, so a resumed run
    draws what an uninterrupted one would have.

    Distributed (``num_replicas`` processes, this one ``rank``): every rank draws the same
    epoch of windows and keeps ``windows[rank::num_replicas]``, so no window goes to two
    ranks and together they see what one process with the same seed draws (the epoch is
    rounded up to a multiple of ``num_replicas`` with further fresh draws, never repeats, so
    every rank has as many batches). With a per-process batch of ``B``, optimiser step ``k``
    of ``N`` ranks sees exactly the windows of step ``k`` of one process with batch ``N * B``.
    It is a ``DistributedSampler`` so that Lightning uses it as it is, instead of wrapping it
    in a sampler that would pad the epoch with repeated windows.
    """

    def __init__(
        self, dataset: SegmentDataset, num_windows: int, seed: int = 0, num_replicas: int = 1, rank: int = 0
    ):
        if num_windows < 1:
            raise ConfigError(f"windows per epoch must be >= 1, got {num_windows}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed)
        self.num_windows = num_windows
        # every rank gets the same number of windows (DDP steps in lockstep)
        self.num_samples = math.ceil(num_windows / num_replicas)
        self.total_size = self.num_samples * num_replicas
        length = dataset.segment_length
        spans = np.array([max(last - first - length + 1, 0) for first, last in dataset.region_samples])
        if spans.sum() == 0:
            raise ConfigError(f"no region holds a whole segment of {length} samples")
        self._spans = spans
        self._weights = spans / spans.sum()

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        windows = self._draw(self.total_size)
        return iter(windows[self.rank :: self.num_replicas])

    def _draw(self, count: int) -> list[tuple[int, int]]:
        """The epoch's first ``count`` windows (the same on every rank; a prefix of a longer draw)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        windows = []
        for _ in range(count):
            for _attempt in range(100):
                pair = int(rng.choice(len(self._spans), p=self._weights))
                start = self.dataset.region_samples[pair][0] + int(rng.integers(self._spans[pair]))
                if not (self.dataset.skip_silent and self.dataset.is_silent(pair, start)):
                    break
            windows.append((pair, start))
        return windows


class ShardSampler(DistributedSampler):
    """This rank's share of the consecutive segments: a contiguous block, every segment once.

    Rank ``r`` of ``n`` gets indices ``[r * N // n, (r + 1) * N // n)`` of the ``N``
    segments: no padding with repeated segments (Lightning's default sampler repeats a few to
    even out the ranks, which would count them twice in validation and test metrics), shares
    differ by at most one segment, and read in rank order they are the segments in order.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        total = len(dataset)
        self.indices = range(rank * total // num_replicas, (rank + 1) * total // num_replicas)
        self.num_samples = len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _as_source(pair: PairSource) -> tuple[Path, Path, tuple[float, ...]]:
    if len(pair) not in (2, 3):
        raise ConfigError(f"a pair is (input, target) or (input, target, knobs), got {pair!r}")
    knobs = tuple(float(value) for value in pair[2]) if len(pair) == 3 else ()
    return Path(pair[0]), Path(pair[1]), knobs


def _common_knob_count(sources: list[tuple[Path, Path, tuple[float, ...]]]) -> int:
    counts = {len(knobs) for _, _, knobs in sources}
    if len(counts) > 1:
        raise DataError(
            f"pairs carry different numbers of knob values: {sorted(counts)}",
            ", ".join(f"{target} ({len(knobs)})" for _, target, knobs in sources),
            "give every pair the same knobs, in the same order",
        )
    return counts.pop()


def _load_pair(
    input_path: Path, target_path: Path, sample_rate: int, loaded: dict[Path, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load input and target at ``sample_rate``, checking they share a rate and a length."""
    both = f"{input_path} and {target_path}"
    input_rate, target_rate = audio_sample_rate(input_path), audio_sample_rate(target_path)
    if input_rate != target_rate:
        raise DataError(
            f"input is at {input_rate} Hz but target at {target_rate} Hz",
            both,
            "export both files of a pair at the same sample rate (the one they were recorded at)",
        )
    for path in (input_path, target_path):
        if path not in loaded:
            loaded[path] = load_audio(path, sample_rate)
    x, y = loaded[input_path], loaded[target_path]
    if x.shape[-1] != y.shape[-1]:
        raise DataError(
            f"input has {x.shape[-1]} samples but target {y.shape[-1]} (at {sample_rate} Hz)",
            both,
            "crop the target to the dry file's length after aligning them (`nablafx data check` "
            "estimates their latency)",
        )
    return x, y


def _segment_starts(
    length: int, segment_length: int, hop_length: int, region: tuple[float, float], path: Path
) -> range:
    """Start samples of the whole segments inside ``region``; a shorter remainder is dropped."""
    if length < segment_length:
        raise DataError(
            f"the file holds {length} samples, fewer than one segment of {segment_length}",
            path,
            "use shorter segments (segment_seconds, test_segment_seconds) or a longer recording",
        )
    first, last = _region_samples(length, region)
    if last - first < segment_length:
        # Other files may fill this region (a short take among long ones): not fatal by itself.
        warnings.warn(
            f"{path}: its region {region[0]:g}-{region[1]:g} holds {last - first} samples, fewer than "
            f"one segment of {segment_length}; no segments come from it",
            stacklevel=3,
        )
    return range(first, last - segment_length + 1, hop_length)


def _region_samples(length: int, region: tuple[float, float]) -> tuple[int, int]:
    # Rounding (not flooring) keeps 0.9 * length from losing a sample to float error.
    return round(region[0] * length), round(region[1] * length)
