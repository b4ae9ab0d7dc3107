"""The ToneTwist AFx dataset layout: finding dry/wet pairs and reading knob settings.

Layout (see the README of the dataset)::

    <root>/
      DRY-with-markers/ or DRY/
        trainval/<name>.input.wav
        test/<name>.input.wav
      <Brand-Device>/
        trainval/<SETTING>/<SETTING>.<name>.target.wav
        test/<SETTING>/<SETTING>.<name>.target.wav

Each target is paired with the dry file of the same ``<name>`` in the same split. The
external-sources variant (``DRY/trainval/{train,val}.input.wav``,
``<SETTING>.{train,val,test}.target.wav``) follows the same rule with the names
``train``, ``val`` and ``test``; the data module keeps its train/val split.

A ``<SETTING>`` is knob positions joined by ``_``: one letter plus the dial value x10 as
three digits (``C030_R050_L060``); the normalised knob value is digits / 100. Other
tokens are words for switch positions (``MNormal``, ``RAll``, ``DSi``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from nablafx.data.errors import DataError
from nablafx.errors import ConfigError

# When both exist, the copy with sync markers is the one the targets were recorded from.
DRY_FOLDERS = ("DRY-with-markers", "DRY")
SPLITS = ("trainval", "test")
INPUT_SUFFIX = ".input.wav"
TARGET_SUFFIX = ".target.wav"

_KNOB_TOKEN = re.compile(r"([A-Za-z])(\d{3})")


@dataclass
class Pair:
    """One dry recording and the device's output for it at one setting."""

    input_path: Path
    target_path: Path
    setting: str  # the setting folder name, "" when the pair does not come from one
    knobs: dict[str, float]  # the numeric knobs of the setting, letter -> value in [0, 1]
    name: str  # the recording's name, shared by the dry file and its targets


@dataclass
class SplitScan:
    """What :func:`scan_split` found: matched pairs and targets whose dry file is missing."""

    pairs: list[Pair] = field(default_factory=list)
    orphan_targets: list[tuple[Path, Path]] = field(default_factory=list)  # (target, expected dry)


def split_setting(name: str) -> tuple[dict[str, float], list[str]]:
    """Split a setting name into its numeric knobs and its word tokens.

    ``"C030_MNormal"`` -> ``({"C": 0.3}, ["MNormal"])``. Raises :class:`DataError` for a
    knob given twice or a dial beyond 10 (digits above 100).
    """
    knobs: dict[str, float] = {}
    words: list[str] = []
    for token in name.split("_"):
        match = _KNOB_TOKEN.fullmatch(token)
        if match is None:
            words.append(token)
            continue
        letter, digits = match.groups()
        if letter in knobs:
            raise DataError(
                f"knob {letter} appears twice in the setting name", name, "name each knob once"
            )
        if int(digits) > 100:
            raise DataError(
                f"knob {token} is beyond dial 10 (three digits, 000-100 = dial x10)",
                name,
                f"rename the setting folder, e.g. {letter}100 for dial 10",
            )
        knobs[letter] = int(digits) / 100
    return knobs, words


def parse_setting(name: str) -> dict[str, float] | None:
    """Knob values of a fully numeric setting name, or None when any token is a word.

    ``"C030_R050_L060"`` -> ``{"C": 0.3, "R": 0.5, "L": 0.6}``; ``"MNormal"`` and the
    mixed ``"C030_MNormal"`` -> None (such settings can only be used as a fixed setting,
    or conditioned on their numeric part; see :func:`split_setting`).
    """
    knobs, words = split_setting(name)
    return None if words else knobs


def find_dry_folder(root: str | PathLike) -> Path:
    """The dry folder of a dataset root: ``DRY-with-markers/`` if present, else ``DRY/``."""
    root = _existing_root(root)
    for folder in DRY_FOLDERS:
        if (root / folder).is_dir():
            return root / folder
    raise DataError(
        f"no dry folder ({' or '.join(name + '/' for name in DRY_FOLDERS)})",
        root,
        "point `root` at the folder that holds the dry recordings and the device folders",
    )


def device_folders(root: str | PathLike) -> list[str]:
    """Names of the device folders of a dataset root: folders with a trainval/ or test/ split."""
    root = _existing_root(root)
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir()
        and entry.name not in DRY_FOLDERS
        and any((entry / split).is_dir() for split in SPLITS)
    )


def list_settings(root: str | PathLike, device: str, split: str) -> list[str]:
    """Setting folder names of one device and split, sorted."""
    return sorted(entry.name for entry in _split_folder(root, device, split).iterdir() if entry.is_dir())


def scan_split(
    root: str | PathLike, device: str, split: str, settings: list[str] | None = None
) -> SplitScan:
    """Match every target of ``device``/``split`` (optionally only ``settings``) to its dry file.

    Raises :class:`DataError` for a missing root, device, dry folder, split folder or
    requested setting; targets without a dry file are returned in ``orphan_targets``.
    """
    split_folder = _split_folder(root, device, split)
    dry_folder = find_dry_folder(root) / split
    if not dry_folder.is_dir():
        raise DataError(
            f"no {split}/ folder in the dry folder",
            dry_folder.parent,
            f"put the dry {split} recordings in {dry_folder}/<name>{INPUT_SUFFIX}",
        )
    available = list_settings(root, device, split)
    missing = [setting for setting in settings or [] if setting not in available]
    if missing:
        raise DataError(
            f"setting folder(s) {', '.join(missing)} not found; "
            f"available: {', '.join(available) or 'none'}",
            split_folder,
            "choose `settings` among the available ones (or leave it empty to use all)",
        )
    scan = SplitScan()
    for setting in settings or available:
        knobs = _setting_knobs(split_folder / setting)
        for target in sorted((split_folder / setting).glob("*" + TARGET_SUFFIX)):
            name = _recording_name(target.name, setting)
            dry = dry_folder / (name + INPUT_SUFFIX)
            if dry.is_file():
                scan.pairs.append(Pair(dry, target, setting, dict(knobs), name))
            else:
                scan.orphan_targets.append((target, dry))
    return scan


def find_pairs(
    root: str | PathLike, device: str, split: str, settings: list[str] | None = None
) -> list[Pair]:
    """Dry/target pairs of one device and split (``"trainval"`` or ``"test"``).

    ``settings`` picks setting folders (None = all). Raises :class:`DataError` when a
    folder is missing, a target has no dry file, or nothing was found.
    """
    scan = scan_split(root, device, split, settings)
    if scan.orphan_targets:
        target, dry = scan.orphan_targets[0]
        others = len(scan.orphan_targets) - 1
        raise DataError(
            f"target has no dry file: expected {dry}"
            + (f" (and {others} more target(s) without a dry file)" if others else ""),
            target,
            f"add the dry recording as <name>{INPUT_SUFFIX} to {dry.parent}, or remove the target",
        )
    if not scan.pairs:
        searched = _split_folder(root, device, split)
        raise DataError(
            f"no pairs found: searched <SETTING>/*{TARGET_SUFFIX} in "
            f"{', '.join(settings) if settings else 'every setting folder'} "
            f"for dry files *{INPUT_SUFFIX} in {find_dry_folder(root) / split}",
            searched,
            f"name targets <SETTING>.<name>{TARGET_SUFFIX} after their dry file <name>{INPUT_SUFFIX}",
        )
    return scan.pairs


def _setting_knobs(setting_folder: Path) -> dict[str, float]:
    """Numeric knobs of a setting folder; a bad name is reported with the folder's path."""
    try:
        return split_setting(setting_folder.name)[0]
    except DataError as error:
        raise DataError(error.problem, setting_folder, error.fix) from None


def _recording_name(target_file: str, setting: str) -> str:
    """``"C030.nam.target.wav"`` in folder ``C030`` -> ``"nam"`` (the setting prefix is optional)."""
    name = target_file[: -len(TARGET_SUFFIX)]
    return name[len(setting) + 1 :] if name.startswith(setting + ".") else name


def _existing_root(root: str | PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            "dataset folder not found",
            root,
            "give the folder that holds DRY/ (or DRY-with-markers/) and the device folders "
            "(the data module's `root`)",
        )
    return root


def _split_folder(root: str | PathLike, device: str, split: str) -> Path:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    device_folder = _existing_root(root) / device
    if not device_folder.is_dir():
        available = device_folders(root)
        raise DataError(
            f"device folder {device!r} not found; available: {', '.join(available) or 'none'}",
            Path(root),
            "set `device` to one of the available device folders",
        )
    split_folder = device_folder / split
    if not split_folder.is_dir():
        raise DataError(
            f"no {split}/ folder in the device folder",
            device_folder,
            f"put the {split} targets in {split_folder}/<SETTING>/",
        )
    return split_folder
