"""What a finished run records in ``results.json`` (schema 1).

Keys: ``schema``, ``id``, ``sweep``, ``status`` ("finished"), ``axes`` {axis: label}, ``seed``,
``overrides``, ``configs``, ``family``, ``conditioning``, ``objective`` {name, value},
``test`` {esr, l1, mse, mrstft, lufs_diff, loss}, ``per_setting`` [{setting, examples, esr, l1,
mse, mrstft, lufs_diff}], ``params``, ``macs_per_sample``, ``receptive_field``, ``speed``
[{block_size, times_real_time}], ``train`` {seconds, steps, epochs, attempts, best_checkpoint},
``curves`` {"train/loss" | "val/loss" | "val/esr": [[step, value], ...]}, ``media`` {input,
target, prediction} (paths relative to the run folder), ``code_version``, ``packages``
{name: version}, ``started``, ``ended``, ``host``.
"""

from __future__ import annotations

import csv
import importlib.metadata
import re
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import nablafx

SPEED_BLOCK_SIZES = (64, 128, 256, 512, 1024, 2048)
CURVES = ("train/loss", "val/loss", "val/esr")
PACKAGES = ("torch", "torchaudio", "lightning", "optuna", "numpy", "auraloss", "wandb")
MEDIA_SECONDS = 2.0
REPO_ROOT = Path(nablafx.__file__).resolve().parent.parent


def code_version() -> str:
    """``<version> (<git describe>)`` in a git checkout, else the package version."""
    if (REPO_ROOT / ".git").exists():
        try:
            described = subprocess.run(
                ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--tags"],
                capture_output=True, text=True, timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            described = ""
        if described:
            return f"{nablafx.__version__} ({described})"
    return nablafx.__version__


def packages() -> dict[str, str]:
    versions = {"nablafx": nablafx.__version__}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def family_and_conditioning(net_config: dict) -> tuple[str, str]:
    """Family as the exporters name it (tcn, gcn, s4, wavenet, lstm, gru, graybox) and the
    conditioning method (the net's ``conditioning`` option; gray-box chains: ``knobs`` when
    conditioned on knobs, else ``none``)."""
    from nablafx.core import from_config
    from nablafx.export.families import model_family

    family = model_family(from_config(net_config))
    init = net_config.get("init_args") or {}
    conditioning = init.get("conditioning") or ("knobs" if init.get("num_knobs") else "none")
    return family, str(conditioning)


def speed(net: torch.nn.Module, sample_rate: int, seconds: float = 0.5, budget: float = 0.5) -> list[dict]:
    """Streaming speed (times real time, one thread) at each block size: short timings."""
    from nablafx.benchmark import times_real_time
    from nablafx.runtime import StreamingRuntime

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runtime = StreamingRuntime(net)
        rows = []
        for size in SPEED_BLOCK_SIZES:
            runtime.reset()
            speed = times_real_time(runtime.process, sample_rate, size, seconds, budget)
            rows.append({"block_size": size, "times_real_time": round(speed.cpu, 2)})
        return rows
    finally:
        torch.set_num_threads(threads)


def _attempt_number(folder: Path) -> int:
    match = re.search(r"(\d+)$", folder.name)
    return int(match.group(1)) if match else 0


def curves(run: Path) -> dict[str, list[list[float]]]:
    """Training curves from the CSV logs of every attempt (``csv/attempt-N/metrics.csv``).

    A resumed attempt starts at its checkpoint's step: points an earlier attempt logged from
    that step on (trained again after the kill) are replaced by the resumed attempt's."""
    series: dict[str, dict[int, float]] = {name: {} for name in CURVES}
    for folder in sorted((run / "csv").glob("attempt-*"), key=_attempt_number):
        path = folder / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="") as file:
            rows = [row for row in csv.DictReader(file) if row.get("step")]
        if not rows:
            continue
        first = min(int(float(row["step"])) for row in rows)
        for name in CURVES:
            series[name] = {step: value for step, value in series[name].items() if step < first}
        for row in rows:
            for name in CURVES:
                if row.get(name) not in (None, ""):
                    series[name][int(float(row["step"]))] = float(row[name])
    return {name: [[step, points[step]] for step in sorted(points)] for name, points in series.items()}


def media(run: Path) -> dict[str, str]:
    """The first test example (rendered by the best model during test), its first
    ``MEDIA_SECONDS`` copied to ``media/test/{input,target,prediction}.wav``."""
    folders = sorted((run / "media").glob("test-step*"), key=lambda p: p.stat().st_mtime)
    if not folders:
        return {}
    found = {}
    for name in ("input", "target", "prediction"):
        source = folders[-1] / f"00-{name}.wav"
        if not source.is_file():
            continue
        audio, rate = sf.read(source, dtype="float32")
        target = run / "media" / "test" / f"{name}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, np.asarray(audio[: int(MEDIA_SECONDS * rate)]), rate, subtype="FLOAT")
        found[name] = str(target.relative_to(run))
    return found
