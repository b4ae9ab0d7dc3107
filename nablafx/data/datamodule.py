"""The Lightning data module: paired recordings -> batches ``(x, y, knobs)``.

Two sources feed the same :class:`~nablafx.data.dataset.SegmentDataset`:

- a ToneTwist-layout folder (``root`` + ``device`` [+ ``settings``, ``knobs``]);
- ``pairs``: input/target files listed in the config.

Validation comes from the last ``val_fraction`` of every trainval file by time (or from
explicit validation files: the ``val`` recordings of the external-sources layout, or
``pairs.val``), so train and validation never share neighbouring pieces of audio.

Distributed (DDP): the loaders shard by rank themselves. ``batch_size`` is per process
(``N`` processes step on ``N * batch_size`` windows), ``windows_per_epoch`` counts the
windows of all ranks together, and validation and test segments are split between the
ranks with each segment scored exactly once (see :mod:`nablafx.data.dataset`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from nablafx.data.dataset import RandomWindowSampler, SegmentDataset, ShardSampler
from nablafx.data.errors import DataError
from nablafx.data.tonetwist import Pair, find_pairs
from nablafx.errors import ConfigError

WHOLE_FILE = (0.0, 1.0)
PAIRS_KEYS = ("train", "val", "test")


class EffectDataModule(LightningDataModule):
    """Paired dry/wet recordings of an audio effect, cut into segments for training.

    Args:
        root: Dataset folder: the one that holds ``DRY/`` (or ``DRY-with-markers/``) and
            the device folders. With ``pairs``, relative file paths start here.
        device: Device folder in ``root`` (ToneTwist layout), e.g. ``Synth-Overdrive``.
        settings: Setting folders to use (e.g. ``[C030_R050]``); None uses all of them.
            One setting and no knobs is a non-parametric (snapshot) model.
        knobs: Knob letters that condition the model, in this order (e.g. ``[C, R]``);
            None or [] for none. Every chosen setting must have each letter as a number.
        pairs: Input/target files instead of a ToneTwist folder:
            ``{train: [[in.wav, out.wav], ...], val: [...], test: [...]}`` (val and test
            optional). A third item per pair gives its knob values, as a dict
            ``{G: 0.5}`` or a list in the order of ``knobs``.
        sample_rate: Sample rate of the model in Hz; files at other rates are resampled.
        segment_seconds: Length of training and validation segments in seconds: the part of
            each window the loss is computed on. The model's context (receptive field minus
            one, or its burn-in; set by the training module) is added before it.
        test_segment_seconds: Length of test segments in seconds.
        val_fraction: Fraction of each trainval file, at its end, used for validation
            (ignored when validation files are given). 0 disables validation.
        batch_size: Segments per training and validation batch, per process under DDP.
        test_batch_size: Segments per test and prediction batch, per process under DDP.
        num_workers: DataLoader worker processes (0 loads in the main process; audio is
            preloaded in memory, so workers rarely help).
        skip_silent: Drop segments whose input is silent; they teach nothing.
        random_windows: Draw training windows at random positions, new ones every epoch
            (reproducible from ``seed``); False cuts consecutive segments once.
        windows_per_epoch: Training windows per epoch with ``random_windows``, all processes
            together under DDP; None: as many as the training regions hold whole segments.
        seed: Seed of the random window positions.
        synth: Arguments of ``nablafx.data.synth.render.render_dataset`` (e.g.
            ``{device: overdrive, seconds: 60}``): renders the built-in synthetic
            dataset into ``root`` when the ``device`` folder is not there yet.
    """

    def __init__(
        self,
        root: str | None = None,
        device: str | None = None,
        settings: list[str] | None = None,
        knobs: list[str] | None = None,
        pairs: dict[str, list] | None = None,
        sample_rate: int = 48000,
        segment_seconds: float = 3.0,
        test_segment_seconds: float = 5.0,
        val_fraction: float = 0.1,
        batch_size: int = 16,
        test_batch_size: int = 8,
        num_workers: int = 0,
        skip_silent: bool = True,
        random_windows: bool = True,
        windows_per_epoch: int | None = None,
        seed: int = 0,
        synth: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.root = root
        self.device = device
        self.settings = list(settings) if settings else None
        self.pairs = pairs
        self._knob_names = list(knobs or [])
        self._sample_rate = sample_rate
        self.segment_seconds = segment_seconds
        self.test_segment_seconds = test_segment_seconds
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.test_batch_size = test_batch_size
        self.num_workers = num_workers
        self.skip_silent = skip_silent
        self.random_windows = random_windows
        self.windows_per_epoch = windows_per_epoch
        self.seed = seed
        self.synth = synth
        self.context = 0
        self.train_dataset: SegmentDataset | None = None
        self.val_dataset: SegmentDataset | None = None
        self.test_dataset: SegmentDataset | None = None
        self._check_configuration()
        self.save_hyperparameters()

    # -- what the model needs to know, available before setup --------------------------

    @property
    def knob_names(self) -> list[str]:
        """Letters of the knobs that condition the model, in the order of the knob vector."""
        return list(self._knob_names)

    @property
    def num_knobs(self) -> int:
        return len(self._knob_names)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def dataset_name(self) -> str:
        """Short name for run names and reports: the device and its settings."""
        if self.pairs is not None:
            return Path(self.root).name if self.root else "pairs"
        if not self.settings:
            return self.device
        if len(self.settings) <= 2:
            return f"{self.device}-{'+'.join(self.settings)}"
        return f"{self.device}-{len(self.settings)}settings"

    def set_context(self, samples: int) -> None:
        """Give every window ``samples`` of input history before its scored segment."""
        if samples < 0:
            raise ConfigError(f"context must be >= 0 samples, got {samples}")
        self.context = int(samples)
        for dataset in (self.train_dataset, self.val_dataset, self.test_dataset):
            if dataset is not None:
                dataset.context = self.context

    # -- Lightning hooks ----------------------------------------------------------------

    def prepare_data(self) -> None:
        self._render_synth_if_missing()

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of ``stage`` ("fit", "validate", "test", "predict"; None = all)."""
        self._render_synth_if_missing()
        if stage in ("fit", "validate", None) and self.train_dataset is None:
            train_pairs, train_region, val_pairs, val_region = self._fit_pairs()
            shared_audio: dict = {}  # train and validation regions of one file share its samples
            seconds = self.segment_seconds
            self.train_dataset = self._dataset(train_pairs, seconds, train_region, shared_audio)
            if val_pairs:
                self.val_dataset = self._dataset(val_pairs, seconds, val_region, shared_audio)
            self._log_sizes()
        if stage in ("test", "predict", None) and self.test_dataset is None:
            test_pairs = self._test_pairs()
            self.test_dataset = self._dataset(test_pairs, self.test_segment_seconds, WHOLE_FILE, {})
            self._log_sizes()

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        replicas, rank = self._replicas()
        if not self.random_windows:
            if replicas == 1:
                # Dropping a ragged last batch keeps batch statistics even, unless it is the only batch.
                drop_last = len(self.train_dataset) >= self.batch_size
                return self._loader(self.train_dataset, self.batch_size, shuffle=True, drop_last=drop_last)
            # drop_last: the ragged end of the shuffled epoch is left out, not padded with repeats
            sampler = DistributedSampler(self.train_dataset, replicas, rank, shuffle=True, seed=self.seed,
                                         drop_last=True)
            self._check_share(len(sampler), "training")
        else:
            windows = self.windows_per_epoch or max(len(self.train_dataset), self.batch_size * replicas)
            sampler = RandomWindowSampler(self.train_dataset, windows, self.seed, replicas, rank)
        return self._loader(self.train_dataset, self.batch_size, sampler=sampler,
                            drop_last=len(sampler) >= self.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        if self.train_dataset is None:
            self.setup("validate")
        # No validation set (val_fraction=0): an empty list tells Lightning to skip validation.
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, self.batch_size, sampler=self._shard(self.val_dataset, "validation"))

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            self.setup("test")
        return self._loader(self.test_dataset, self.test_batch_size, sampler=self._shard(self.test_dataset, "test"))

    def predict_dataloader(self) -> DataLoader:
        # Unsharded: Lightning splits prediction loaders between the ranks itself (without repeats).
        if self.test_dataset is None:
            self.setup("predict")
        return self._loader(self.test_dataset, self.test_batch_size)

    # -- distributed ----------------------------------------------------------------------

    def _replicas(self) -> tuple[int, int]:
        """``(processes, this process's rank)`` of the trainer's distributed run, else ``(1, 0)``."""
        trainer = self.trainer
        kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
        if not kwargs:
            return 1, 0
        return int(kwargs["num_replicas"]), int(kwargs["rank"])

    def _shard(self, dataset: SegmentDataset, split: str) -> ShardSampler | None:
        """This rank's block of the consecutive ``split`` segments; None in one process."""
        replicas, rank = self._replicas()
        if replicas == 1:
            return None
        sampler = ShardSampler(dataset, replicas, rank)
        self._check_share(len(sampler), split)
        return sampler

    def _check_share(self, share: int, split: str) -> None:
        # A rank without batches would skip the collective calls the others wait in.
        if share == 0:
            replicas, rank = self._replicas()
            raise ConfigError(
                f"rank {rank} of {replicas} processes gets no {split} segments; every process needs at "
                f"least one: use more or shorter segments, or fewer processes"
            )

    # -- building -------------------------------------------------------------------------

    def _check_configuration(self) -> None:
        """Reject configurations that cannot work, before any file is read."""
        if self.pairs is not None:
            if self.device is not None or self.synth is not None:
                raise ConfigError("give either `pairs` or a ToneTwist folder (`device`, `synth`), not both")
            if set(self.pairs) - set(PAIRS_KEYS) or not self.pairs.get("train"):
                raise ConfigError(
                    f"`pairs` needs a non-empty `train` list and only the keys {PAIRS_KEYS}; "
                    f"got {sorted(self.pairs)}"
                )
        elif self.root is None or self.device is None:
            raise ConfigError("set `root` and `device` (a ToneTwist-layout folder), or list files in `pairs`")
        if len(set(self._knob_names)) != len(self._knob_names):
            raise ConfigError(f"`knobs` names a knob twice: {self._knob_names}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"`val_fraction` must be in [0, 1), got {self.val_fraction}")
        if self.windows_per_epoch is not None and self.windows_per_epoch < 1:
            raise ConfigError(f"`windows_per_epoch` must be >= 1 or null, got {self.windows_per_epoch}")
        if self.batch_size < 1 or self.test_batch_size < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {self.batch_size} and {self.test_batch_size}")

    def _render_synth_if_missing(self) -> None:
        if self.synth is None:
            return
        if (Path(self.root) / self.device).is_dir():
            from nablafx.data.synth.manifest import check_generator_version

            check_generator_version(Path(self.root))
            return
        from nablafx.data.synth.render import render_dataset  # heavy (numba): only to render
        rank_zero_info(
            f"{Path(self.root) / self.device} not found: rendering the built-in synthetic dataset "
            f"into {self.root} with {self.synth}"
        )
        render_dataset(self.root, **{"progress": rank_zero_info, **self.synth})

    def _fit_pairs(self) -> tuple[list[Pair], tuple[float, float], list[Pair], tuple[float, float]]:
        """Train and validation pairs with the time region each is cut from."""
        if self.pairs is not None:
            train = self._config_pairs("train")
            val = self._config_pairs("val") if self.pairs.get("val") else None
        else:
            trainval = find_pairs(self.root, self.device, "trainval", self.settings)
            names = {pair.name for pair in trainval}
            # External sources ship their own split as train/val recordings: keep it.
            external = "val" in names and names <= {"train", "val"}
            train = [pair for pair in trainval if pair.name == "train"] if external else trainval
            val = [pair for pair in trainval if pair.name == "val"] if external else None
            self._check_knobs_tell_settings_apart(trainval)
        if val is not None:
            return train, WHOLE_FILE, val, WHOLE_FILE
        split_point = 1.0 - self.val_fraction
        return train, (0.0, split_point), (train if self.val_fraction > 0 else []), (split_point, 1.0)

    def _test_pairs(self) -> list[Pair]:
        if self.pairs is not None:
            if not self.pairs.get("test"):
                raise DataError(
                    "no test pairs configured",
                    self.root,
                    "add `pairs: {test: [[input.wav, target.wav], ...]}` to the data config",
                )
            return self._config_pairs("test")
        test = find_pairs(self.root, self.device, "test", self.settings)
        self._check_knobs_tell_settings_apart(test)
        return test

    def _config_pairs(self, split: str) -> list[Pair]:
        base = Path(self.root) if self.root else Path()
        return [_config_pair(entry, split, base, self._knob_names) for entry in self.pairs[split]]

    def _dataset(
        self, pairs: list[Pair], seconds: float, region: tuple[float, float], audio_cache: dict
    ) -> SegmentDataset:
        sources = [
            (pair.input_path, pair.target_path, _knob_vector(pair, self._knob_names)) for pair in pairs
        ]
        dataset = SegmentDataset(
            sources,
            self._sample_rate,
            segment_length=round(seconds * self._sample_rate),
            region=region,
            skip_silent=self.skip_silent,
            audio_cache=audio_cache,
        )
        dataset.context = self.context
        return dataset

    def _check_knobs_tell_settings_apart(self, pairs: list[Pair]) -> None:
        """Two settings with equal knob vectors would give one input two different targets."""
        setting_of_vector: dict[tuple[float, ...], Pair] = {}
        for pair in pairs:
            vector = tuple(_knob_vector(pair, self._knob_names))
            seen = setting_of_vector.setdefault(vector, pair)
            if seen.setting == pair.setting:
                continue
            differing = sorted(
                letter
                for letter in set(seen.knobs) | set(pair.knobs)
                if seen.knobs.get(letter) != pair.knobs.get(letter)
            )
            raise DataError(
                f"settings {seen.setting} and {pair.setting} get the same knob values {list(vector)} "
                f"for knobs {self._knob_names}, so the model could not tell their targets apart",
                pair.target_path.parent.parent,
                f"condition on the knobs that differ (knobs: [{', '.join(differing)}])"
                if differing
                else "choose one of these settings with `settings`",
            )

    def _loader(
        self, dataset: SegmentDataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
        sampler: Sampler | None = None,
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _log_sizes(self) -> None:
        datasets = {"train": self.train_dataset, "val": self.val_dataset, "test": self.test_dataset}
        sizes = {name: len(dataset) for name, dataset in datasets.items() if dataset is not None}
        rank_zero_info(f"{self.dataset_name}: segments {sizes}, knobs {self._knob_names or 'none'}")


def _config_pair(entry: Any, split: str, base: Path, knob_names: list[str]) -> Pair:
    """``[input, target]`` or ``[input, target, knobs]`` from ``pairs.<split>`` as a :class:`Pair`."""
    if not isinstance(entry, (list, tuple)) or len(entry) not in (2, 3):
        raise ConfigError(
            f"each entry of pairs.{split} is [input, target] or [input, target, knobs], got {entry!r}"
        )
    input_path, target_path = base / entry[0], base / entry[1]
    values = entry[2] if len(entry) == 3 else {}
    if not isinstance(values, dict):
        if len(values) != len(knob_names):
            raise DataError(
                f"pair has {len(values)} knob value(s) {list(values)} "
                f"but `knobs` names {len(knob_names)}: {knob_names}",
                target_path,
                "give one value per knob letter in `knobs`, or the values as a dict {letter: value}",
            )
        values = dict(zip(knob_names, values))
    knobs = {str(letter): float(value) for letter, value in values.items()}
    return Pair(input_path, target_path, "", knobs, target_path.name)


def _knob_vector(pair: Pair, knob_names: list[str]) -> list[float]:
    """Values of ``knob_names`` for a pair, in order; every name must be a numeric knob of it."""
    missing = [letter for letter in knob_names if letter not in pair.knobs]
    if missing:
        where = f"setting {pair.setting}" if pair.setting else "pair"
        raise DataError(
            f"{where} has no numeric value for knob(s) {', '.join(missing)} "
            f"(its knobs: {pair.knobs or 'none'})",
            pair.target_path.parent if pair.setting else pair.target_path,
            "choose `knobs` among the letters every selected setting has, or select other `settings`",
        )
    return [pair.knobs[letter] for letter in knob_names]
