"""The sweep file: what to train, as a grid of points.

A sweep YAML names base ``-c`` config files, overrides that hold for every run
(``fixed``), named axes, seeds, excluded combinations, the objective and how often a
failed run is retried::

    name: zoo-quick
    base: [../data/synth-overdrive.yaml, ../trainer/capture.yaml]   # relative to this file or the repo
    fixed: {trainer.max_steps: 200}
    axes:
      model:                       # a config-file axis: label -> config file
        tcn: ../model/tcn/tcn-45-s-16.yaml
        lstm: ../model/rnn/lstm-32.yaml
      lr: {key: model.lr, values: [0.001, 0.005]}   # a key axis: one dotted key, its values
      loss:                        # an override axis: label -> overrides (several keys at once)
        l1: {model.loss: {l1: 1.0, mrstft: 0.1}}
        mse: {model.loss: {mse: 1.0}}
    seeds: [0, 1]
    exclude: [{model: lstm, lr: 0.005}]           # partial assignments to skip
    objective: test/esr                            # minimised
    max_retries: 1

A grid point is one assignment of every axis plus a seed. Its run id is the first 12 hex
digits of the SHA-256 of its canonical form (sorted JSON of the config files and the
overrides, seed included), so the same point has the same id in every run of the sweep
and on every machine; config files count by their content, not their path.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nablafx.errors import ConfigError, MissingFileError

KEYS = ("name", "base", "fixed", "axes", "seeds", "exclude", "objective", "max_retries", "wandb")
REQUIRED = ("name", "axes")
#: options the engine sets for every run (paths, loggers, seed); a sweep may not set them
ENGINE_KEYS = ("seed_everything", "trainer.default_root_dir", "trainer.logger", "checkpoint.dirpath", "ckpt_path")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Point:
    """One run of the sweep: an assignment of every axis plus a seed."""

    index: int
    axes: dict[str, Any]            # axis -> label (config-file axis) or value (key axis)
    seed: int
    configs: list[str]              # config files in -c order: base, then config-file axes
    overrides: dict[str, Any]       # dotted key -> value: fixed, key axes, seed_everything
    id: str = ""


@dataclass
class Sweep:
    name: str
    path: str                                   # the sweep file, as given
    configs: dict[str, str]                     # config file (as written in the sweep) -> its text
    points: list[Point]
    objective: str = "test/esr"
    max_retries: int = 1
    wandb: bool = True
    text: str = ""                              # the sweep file itself
    excluded: int = 0                           # grid points dropped by `exclude`
    axes: dict[str, list] = field(default_factory=dict)  # axis -> its labels/values, in order

    def to_dict(self) -> dict:
        """Plain data (stored in the study, so a worker elsewhere needs no files)."""
        return {
            "name": self.name, "path": self.path, "configs": self.configs, "objective": self.objective,
            "max_retries": self.max_retries, "wandb": self.wandb, "text": self.text, "excluded": self.excluded,
            "axes": self.axes,
            "points": [
                {"index": p.index, "axes": p.axes, "seed": p.seed, "configs": p.configs,
                 "overrides": p.overrides, "id": p.id}
                for p in self.points
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Sweep":
        points = [Point(**p) for p in data["points"]]
        return cls(**{**{k: v for k, v in data.items() if k != "points"}, "points": points})

    def point(self, index: int) -> Point:
        return self.points[index]


def run_id(configs: list[str], config_texts: dict[str, str], overrides: dict[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the canonical (sorted JSON) form of a run."""
    canonical = {
        "configs": [hashlib.sha256(config_texts[c].encode()).hexdigest() for c in configs],
        "overrides": overrides,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resolve_config(sweep_file: Path, name: str) -> Path:
    """A config file named in a sweep: relative to the sweep file, else to the repository."""
    candidates = [Path(name)] if Path(name).is_absolute() else [sweep_file.parent / name, REPO_ROOT / name, Path(name)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MissingFileError(
        f"{sweep_file}: config file {name!r} not found (looked in {', '.join(str(c.parent) for c in candidates)}); "
        f"give a path relative to the sweep file or the repository root"
    )


def _fail(path: Path, message: str) -> None:
    raise ConfigError(f"{path}: {message}")


def _check_key(path: Path, where: str, key: Any) -> str:
    if not isinstance(key, str) or not key or key.startswith("-"):
        _fail(path, f"{where}: {key!r} is not a dotted config key such as trainer.max_steps")
    if key in ENGINE_KEYS:
        _fail(path, f"{where}: {key} is set by the sweep engine for every run (run folder, loggers, seed); "
                    f"remove it (seeds go under `seeds:`)")
    return key


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file and plan its grid."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such sweep file")
    text = path.read_text()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(document, dict):
        _fail(path, "a sweep file is a mapping with the keys " + ", ".join(KEYS))
    unknown = [key for key in document if key not in KEYS]
    if unknown:
        _fail(path, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(KEYS)}")
    missing = [key for key in REQUIRED if key not in document]
    if missing:
        _fail(path, f"missing key(s) {', '.join(missing)}; allowed keys: {', '.join(KEYS)}")

    name = document["name"]
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        _fail(path, f"name: {name!r} must be a folder name (no '/'), e.g. zoo-quick")
    base = document.get("base") or []
    if isinstance(base, str):
        base = [base]
    if not isinstance(base, list) or not all(isinstance(b, str) for b in base):
        _fail(path, f"base: expected a list of config files, got {base!r}")
    fixed = document.get("fixed") or {}
    if not isinstance(fixed, dict):
        _fail(path, f"fixed: expected a mapping of dotted keys to values, got {fixed!r}")
    for key in fixed:
        _check_key(path, "fixed", key)
    seeds = document.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        _fail(path, f"seeds: expected a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        _fail(path, f"seeds: {seeds} repeats a seed")
    objective = document.get("objective", "test/esr")
    if not isinstance(objective, str) or not objective.startswith("test/"):
        _fail(path, f"objective: {objective!r} must name a test metric such as test/esr, test/l1, test/mrstft "
                    f"(minimised)")
    max_retries = document.get("max_retries", 1)
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        _fail(path, f"max_retries: expected an integer >= 0, got {max_retries!r}")
    wandb = document.get("wandb", True)
    if not isinstance(wandb, bool):
        _fail(path, f"wandb: expected true or false, got {wandb!r}")

    configs: dict[str, str] = {}

    def add_config(name: str) -> str:
        if name not in configs:
            configs[name] = resolve_config(path, name).read_text()
        return name

    for b in base:
        add_config(b)

    axes = document["axes"]
    if not isinstance(axes, dict) or not axes:
        _fail(path, "axes: expected a mapping of axis names to {label: config file} or {key: ..., values: [...]}")
    # axis -> list of (label, config file or None, ((key, value), ...) or None)
    choices: dict[str, list[tuple[Any, str | None, tuple | None]]] = {}
    for axis, definition in axes.items():
        if not isinstance(axis, str) or axis == "seed":
            _fail(path, f"axes: {axis!r} is not a usable axis name (a string other than 'seed')")
        if not isinstance(definition, dict) or not definition:
            _fail(path, f"axes.{axis}: expected {{label: config file, ...}} or {{key: dotted.key, values: [...]}}, "
                        f"got {definition!r}")
        if "key" in definition or "values" in definition:
            extra = set(definition) - {"key", "values"}
            if extra or "key" not in definition or "values" not in definition:
                _fail(path, f"axes.{axis}: a key axis has exactly the keys `key` and `values`, got "
                            f"{sorted(definition)}")
            key = _check_key(path, f"axes.{axis}.key", definition["key"])
            if key in fixed:
                _fail(path, f"axes.{axis}: {key} is also under fixed; keep it in one place")
            values = definition["values"]
            if not isinstance(values, list) or not values:
                _fail(path, f"axes.{axis}.values: expected a non-empty list, got {values!r}")
            labels = [json.dumps(v, sort_keys=True) for v in values]
            if len(set(labels)) != len(labels):
                _fail(path, f"axes.{axis}.values: {values} repeats a value")
            choices[axis] = [(v, None, ((key, v),)) for v in values]
        else:
            choices[axis] = []
            for label, choice in definition.items():
                if isinstance(choice, str):
                    choices[axis].append((label, add_config(choice), None))
                elif isinstance(choice, dict) and choice:
                    for key in choice:
                        _check_key(path, f"axes.{axis}.{label}", key)
                        if key in fixed:
                            _fail(path, f"axes.{axis}.{label}: {key} is also under fixed; keep it in one place")
                    choices[axis].append((label, None, tuple(choice.items())))
                else:
                    _fail(path, f"axes.{axis}.{label}: expected a config file path or a mapping of dotted keys "
                                f"to values, got {choice!r}")

    exclude = document.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(e, dict) and e for e in exclude):
        _fail(path, f"exclude: expected a list of partial axis assignments such as {{model: lstm}}, got {exclude!r}")
    for rule in exclude:
        for axis, label in rule.items():
            if axis == "seed":
                if label not in seeds:
                    _fail(path, f"exclude: seed {label!r} is not one of the seeds {seeds}")
                continue
            if axis not in choices:
                _fail(path, f"exclude: {axis!r} is not an axis (axes: {', '.join(choices)})")
            if label not in [c[0] for c in choices[axis]]:
                _fail(path, f"exclude: {axis}={label!r} is not one of {[c[0] for c in choices[axis]]}")

    points: list[Point] = []
    excluded = 0
    for combination in itertools.product(*choices.values(), seeds):
        *picked, seed = combination
        assignment = {axis: choice[0] for axis, choice in zip(choices, picked)}
        full = {**assignment, "seed": seed}
        if any(all(full.get(a) == v for a, v in rule.items()) for rule in exclude):
            excluded += 1
            continue
        run_configs = list(base) + [choice[1] for choice in picked if choice[1] is not None]
        overrides = dict(fixed)
        for choice in picked:
            overrides.update(dict(choice[2] or ()))
        overrides["seed_everything"] = seed
        point = Point(len(points), assignment, seed, run_configs, overrides)
        points.append(Point(**{**point.__dict__, "id": run_id(run_configs, configs, overrides)}))
    if not points:
        _fail(path, f"exclude removes every one of the {excluded} grid points; nothing to run")
    ids = [p.id for p in points]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        _fail(path, f"two grid points are the same run (ids {duplicates}): two axis labels name files with the "
                    f"same content or the same overrides")
    return Sweep(
        name=name, path=str(path), configs=configs, points=points, objective=objective, max_retries=max_retries,
        wandb=wandb, text=text, excluded=excluded, axes={axis: [c[0] for c in cs] for axis, cs in choices.items()},
    )


def command_line_value(value: Any) -> str:
    """An override value as LightningCLI reads it (strings as they are, the rest as JSON = YAML)."""
    return value if isinstance(value, str) else json.dumps(value)


def fit_arguments(configs: list[str], overrides: dict[str, Any]) -> list[str]:
    """``-c FILE ... --key value ...`` for ``nablafx fit``."""
    args: list[str] = []
    for config in configs:
        args += ["-c", config]
    for key, value in overrides.items():
        args += [f"--{key}", command_line_value(value)]
    return args
