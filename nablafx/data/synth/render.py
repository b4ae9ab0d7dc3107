"""Render the synthetic dataset to disk in the ToneTwist AFx layout.

::

    out_dir/DRY/trainval/synth-gtr.input.wav, synth-bass.input.wav
    out_dir/DRY/test/synth-gtr-test.input.wav, synth-bass-test.input.wav
    out_dir/DRY/synth.json                        how the dry files were made
    out_dir/<Folder>/trainval/<SETTING>/<SETTING>.<name>.target.wav
    out_dir/<Folder>/test/<SETTING>/<SETTING>.<name>.target.wav
    out_dir/<Folder>/README.md

``<SETTING>`` names every knob of the device: its letter and its value x 100 as three
digits (``D060_T050_L050``), so normalised value = digits / 100, as in ToneTwist.

Several devices (and more settings later) can share one ``out_dir``: the dry files are
rendered once and reused while ``DRY/synth.json`` matches the request, and a request
for different dry material is refused rather than silently unpairing existing targets.
Every file is written under a temporary name and renamed into place, so an interrupted
run never leaves a half-written ``.wav``; the same arguments give byte-identical files.
"""

from __future__ import annotations

import itertools
import json
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile

from nablafx.data.errors import DataError
from nablafx.data.synth.devices import DEVICES, VirtualDevice
from nablafx.data.synth.dry import make_dry
from nablafx.data.synth.manifest import DRY_FOLDER, DRY_MANIFEST, GENERATOR_VERSION
from nablafx.errors import ConfigError
from nablafx.files import replaced_atomically, write_text_atomically

KNOB_STEP = 0.01  # setting names carry two decimals: values snap to this grid
TEST_FRACTION = 1.0 / 3.0  # default test duration relative to trainval


@dataclass(frozen=True)
class DryFile:
    split: str  # "trainval" or "test"
    name: str  # file stem, e.g. "synth-gtr"
    kind: str  # dry signal kind for make_dry: "guitar" or "bass"
    samples: int

    @property
    def relative_path(self) -> str:
        return f"{self.split}/{self.name}.input.wav"


def dry_files(seconds: float, test_seconds: float, sample_rate: int) -> list[DryFile]:
    """The four dry files: each split's duration shared equally by guitar and bass."""
    layout = {
        "trainval": (seconds, {"synth-gtr": "guitar", "synth-bass": "bass"}),
        "test": (test_seconds, {"synth-gtr-test": "guitar", "synth-bass-test": "bass"}),
    }
    return [
        DryFile(split, name, kind, int(round(total / len(names) * sample_rate)))
        for split, (total, names) in layout.items()
        for name, kind in names.items()
    ]


def setting_name(settings: Mapping[str, float]) -> str:
    """``{"D": 0.6, "T": 0.5}`` -> ``"D060_T050"`` (in the given order)."""
    return "_".join(f"{letter}{round(value * 100):03d}" for letter, value in settings.items())


def get_device(name: str) -> VirtualDevice:
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose from {', '.join(DEVICES)}")
    return DEVICES[name]


def knob_grid(
    device: str, knobs: Mapping[str, Sequence[float]] | None = None
) -> list[dict[str, float]]:
    """Every setting of the grid: the cartesian product of the given values per knob.

    Knobs not given keep their default; values snap to the ``KNOB_STEP`` grid that the
    setting names can express (0.333 renders as 0.33, named ``033``), and repeats collapse.
    """
    virtual = get_device(device)
    knobs = dict(knobs or {})
    for letter, values in knobs.items():
        if not len(values):
            raise ConfigError(f"knob {letter} of {device} has an empty list of values")
        for value in values:
            virtual.settings({letter: value})  # raises for an unknown letter or a bad value
    axes = [
        list(dict.fromkeys(snap(value) for value in knobs.get(letter, [virtual.defaults[letter]])))
        for letter in virtual.knobs
    ]
    return [dict(zip(virtual.knobs, values, strict=True)) for values in itertools.product(*axes)]


def snap(value: float) -> float:
    return round(round(float(value) / KNOB_STEP) * KNOB_STEP, 2)


def parse_knob_grid(specs: Sequence[str], device: str = "overdrive") -> dict[str, list[float]]:
    """Parse CLI knob specs such as ``["D=0,0.5,1", "T=0.5"]`` for ``device``.

    Letters are case-insensitive; values are numbers in [0, 1] separated by commas.
    Raises ``ValueError`` naming the spec, what is wrong and the device's knobs.
    """
    virtual = get_device(device)
    example = f"e.g. {virtual.knobs[0]}=0,0.5,1"
    grid: dict[str, list[float]] = {}
    for spec in specs:
        letter, equals, listed = spec.partition("=")
        letter = letter.strip().upper()
        if not equals or len(letter) != 1 or not listed.strip():
            raise ConfigError(
                f"knob spec {spec!r} is not LETTER=VALUE[,VALUE...] ({example}); "
                f"{device} knobs: {virtual.knob_help()}"
            )
        if letter not in virtual.knobs:
            raise ConfigError(
                f"knob spec {spec!r}: {device} has no knob {letter}; "
                f"its knobs are {virtual.knob_help()}"
            )
        if letter in grid:
            raise ConfigError(
                f"knob {letter} is given twice; list all its values in one spec ({example})"
            )
        grid[letter] = [parse_knob_value(text, spec, example) for text in listed.split(",")]
    return grid


def parse_knob_value(text: str, spec: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"knob spec {spec!r}: {text.strip()!r} is not a number ({example})"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"knob spec {spec!r}: {value:g} is outside [0, 1] (knobs are normalised)")
    return value


# --------------------------------------------------------------------------------------
# Writing files atomically and reproducibly
# --------------------------------------------------------------------------------------


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """32-bit float mono WAV, written atomically, same bytes for the same samples."""
    with replaced_atomically(path) as temporary:
        soundfile.write(temporary, samples, sample_rate, subtype="FLOAT", format="WAV")
        clear_peak_timestamp(temporary)


def clear_peak_timestamp(path: Path) -> None:
    """Zero the time stamp libsndfile puts in the PEAK chunk of float WAVs.

    The chunk is ``"PEAK", size, version, timestamp, (value, position) per channel`` and
    lies in the header, before ``"data"``; without this, files differ by their write time.
    """
    with open(path, "r+b") as file:
        header = file.read(1024)
        position = 12  # after "RIFF", size, "WAVE"
        while position + 8 <= len(header):
            chunk = header[position : position + 4]
            size = int.from_bytes(header[position + 4 : position + 8], "little")
            if chunk == b"data":
                return
            if chunk == b"PEAK":
                file.seek(position + 12)
                file.write(bytes(4))
                return
            position += 8 + size + size % 2




# --------------------------------------------------------------------------------------
# Dry files
# --------------------------------------------------------------------------------------


def dry_manifest(files: list[DryFile], seed: int, sample_rate: int) -> dict:
    return {
        "generator": "nablafx.data.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "sample_rate": sample_rate,
        "files": {
            file.relative_path: {"kind": file.kind, "samples": file.samples} for file in files
        },
    }


def describe_manifest(manifest: dict) -> str:
    """``seed 0, 48000 Hz, trainval 60 s, test 20 s, generator 1``."""
    rate = manifest.get("sample_rate")
    files = manifest.get("files", {})
    durations = ", ".join(
        f"{split} {sum(e['samples'] for p, e in files.items() if p.startswith(split)) / rate:.4g} s"
        for split in ("trainval", "test")
    )
    return (
        f"seed {manifest.get('seed')}, {rate} Hz, {durations}, generator {manifest.get('version')}"
    )


def file_seed(seed: int, file: DryFile) -> tuple[int, int]:
    """Independent material per file: the user's seed and a stable hash of the file name."""
    return seed, zlib.crc32(file.name.encode())


def ensure_dry(
    root: Path, files: list[DryFile], seed: int, sample_rate: int
) -> dict[DryFile, np.ndarray]:
    """The dry signals: read back if ``DRY/synth.json`` matches the request, else rendered.

    The manifest is written after the audio, so a run interrupted before it simply
    renders the dry files again. A manifest for different material is an error: the
    targets already in ``root`` pair with the dry files it describes.
    """
    dry_dir = root / DRY_FOLDER
    manifest_path = dry_dir / DRY_MANIFEST
    wanted = dry_manifest(files, seed, sample_rate)
    if manifest_path.is_file():
        existing = json.loads(manifest_path.read_text(encoding="utf-8"))
        if existing != wanted:
            raise DataError(
                f"already holds synthetic dry signals ({describe_manifest(existing)}), "
                f"not the ones asked for ({describe_manifest(wanted)}); the targets rendered "
                "there pair with the existing ones",
                dry_dir,
                "render into another --out folder, or repeat the --seed, --seconds, "
                f"--test-seconds and --sample-rate recorded in {manifest_path}",
            )
        if all((dry_dir / file.relative_path).is_file() for file in files):
            return {file: read_dry(dry_dir / file.relative_path) for file in files}
    signals = {}
    for file in files:
        signals[file] = make_dry(
            file.kind, file.samples / sample_rate, sample_rate, file_seed(seed, file)
        )
        write_wav(dry_dir / file.relative_path, signals[file], sample_rate)
    write_text_atomically(manifest_path, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    return signals


def read_dry(path: Path) -> np.ndarray:
    samples, _ = soundfile.read(path, dtype="float32")
    return samples


# --------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------


def render_dataset(
    out_dir: str | PathLike,
    device: str = "overdrive",
    knobs: Mapping[str, Sequence[float]] | None = None,
    seconds: float = 60.0,
    test_seconds: float | None = None,
    seed: int = 0,
    sample_rate: int = 48000,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Render dry files and one target per dry file and knob setting; return the device folder.

    ``knobs`` maps knob letters to lists of values in [0, 1]; the settings are their
    cartesian product, with the default for every knob not given (``None``: the single
    all-defaults setting). ``seconds`` of trainval and ``test_seconds`` (default a third
    of it) of test audio are each split equally between a guitar and a bass file.
    ``progress`` receives one line per rendered setting.
    """
    virtual = get_device(device)
    test_seconds = seconds * TEST_FRACTION if test_seconds is None else test_seconds
    for label, value in (
        ("seconds", seconds),
        ("test_seconds", test_seconds),
        ("sample_rate", sample_rate),
    ):
        if not value > 0:
            raise ConfigError(f"{label} must be positive, got {value}")
    settings = knob_grid(device, knobs)
    root = Path(out_dir)
    files = dry_files(seconds, test_seconds, sample_rate)
    dry = ensure_dry(root, files, seed, sample_rate)
    folder = root / virtual.folder
    for index, setting in enumerate(settings, start=1):
        name = setting_name(setting)
        for file in files:
            target = virtual.process(dry[file], sample_rate, **setting)
            path = folder / file.split / name / f"{name}.{file.name}.target.wav"
            write_wav(path, target, sample_rate)
            warn_if_over_full_scale(path, target)
        if progress:
            progress(f"[{index}/{len(settings)}] {virtual.folder}/{name}")
    write_text_atomically(folder / "README.md", device_readme(virtual, folder, files, seed, sample_rate))
    return folder


def warn_if_over_full_scale(path: Path, target: np.ndarray) -> None:
    """Float WAV keeps samples above 1.0, but tools that convert to integer clip them."""
    peak = float(np.max(np.abs(target), initial=0.0))
    if peak > 1.0:
        warnings.warn(
            f"{path}: target peaks at {20 * np.log10(peak):+.1f} dBFS (kept in the float WAV; "
            "lower the level or make-up knob to stay within full scale)",
            stacklevel=3,
        )


def rendered_settings(folder: Path) -> list[str]:
    """Setting folders present in the device folder, across both splits."""
    return sorted(
        {
            path.name
            for split in ("trainval", "test")
            for path in (folder / split).glob("*")
            if path.is_dir()
        }
    )


def device_readme(
    virtual: VirtualDevice, folder: Path, files: list[DryFile], seed: int, sample_rate: int
) -> str:
    """Describe the device folder: what rendered it, the knobs, every setting present."""
    knob_rows = "\n".join(
        f"| {letter} | {virtual.knob_names[letter]} | {virtual.knob_ranges[letter]} "
        f"| {virtual.defaults[letter]:.2f} |"
        for letter in virtual.knobs
    )
    example = setting_name(virtual.defaults)
    settings = "\n".join(f"- `{name}`" for name in rendered_settings(folder))
    dry_list = "\n".join(
        f"- `DRY/{file.relative_path}`: {file.kind}, {file.samples / sample_rate:g} s"
        for file in files
    )
    return f"""# {virtual.folder}

Synthetic dataset rendered by `nablafx data synth --device {virtual.name}`
(nablafx.data.synth, generator version {GENERATOR_VERSION}, seed {seed}).
No recording is involved: the dry signals are synthesised guitar and bass material,
sine sweeps and noise bursts, and the targets come from a virtual device.

{virtual.description}

## Knobs

| Letter | Knob | Maps to | Default |
|---|---|---|---|
{knob_rows}

A setting folder names every knob: its letter and its value x 100 as three digits,
e.g. `{example}`; normalised value = digits / 100.

## Settings

{settings}

## Audio

{sample_rate} Hz, 32-bit float WAV, mono. Each target is sample-aligned with the dry file
of the same name (the device is causal and adds no latency).

{dry_list}

The same command with the same `--seed`, `--seconds`, `--test-seconds` and
`--sample-rate` renders byte-identical files (`DRY/{DRY_MANIFEST}` records them).
"""
