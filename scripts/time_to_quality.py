#!/usr/bin/env python
"""Time to quality: test ESR reached by nablafx and by Neural Amp Modeler in the same wall budget.

    python scripts/time_to_quality.py [--budgets 3 6 12] \
        [--families wavenet-standard tcn-45-s-16 lstm-32 nam] [--threads 2] [--out DIR] [--quick]

1. Renders one capture with nablafx's synthetic generator (the virtual overdrive at high
   drive, D=0.9 T=0.5 L=0.5; 60 s trainval, 20 s test, split between a guitar and a bass
   file) into ``DIR/data`` in the ToneTwist layout, and the same audio as one NAM pair per
   split (``DIR/nam-data/{input,output,test_input,test_output}.wav``, the files of each
   split concatenated, 24-bit PCM because NAM's reader, wavio, does not read float WAV).
2. Each nablafx family is trained by ``nablafx fit`` in a subprocess
   (``-c DIR/data.yaml -c <model cfg> -c cfg/trainer/capture.yaml`` or, until that recipe
   exists, ``cfg/trainer/blackbox.yaml``, plus ``--trainer.max_time``, no logger).
3. NAM trains its WaveNet "standard" in a subprocess through its own Python pieces, with
   the defaults of ``nam.train.core.train()`` (see ``nam_worker``), for the same
   ``max_time``.
4. Every model (the best checkpoint by each toolkit's validation loss, and the last state)
   is run on each whole test input file from silence; the test ESR
   sum((y - y_hat)^2) / sum(y^2) over the concatenated test audio is computed here in
   NumPy, against the same float target arrays for both toolkits.

Budgets are minutes (seconds with ``--quick``), each a separate training, run one after
another. Both toolkits stop by Lightning's ``max_time`` (the training stage's clock:
sanity check and set-up excluded, validations included); after the stop each runs one more
validation. Results: a table on stdout, ``DIR/results.json`` and ``DIR/results.md``
(written after every run, so a partial run keeps what it measured).

``--quick`` smoke-tests the harness: 10 s of trainval audio, 4 s of test, budgets in
seconds (default 20), short training segments.

This is a benchmark, not a test: numbers depend on the machine and its load (the load
average is recorded before and after each run).
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 48000
DEVICE_FOLDER = "Synth-Overdrive"
KNOBS = {"D": [0.9], "T": [0.5], "L": [0.5]}
SETTING = "D090_T050_L050"
SEED = 0

NABLAFX_MODELS = {
    "wavenet-standard": "cfg/model/wavenet/wavenet-standard.yaml",
    "tcn-45-s-16": "cfg/model/tcn/tcn-45-s-16.yaml",
    "lstm-32": "cfg/model/rnn/lstm-32.yaml",
}
ALL_FAMILIES = [*NABLAFX_MODELS, "nam"]
TRAINER_CONFIGS = ["cfg/trainer/capture.yaml", "cfg/trainer/blackbox.yaml"]


# --------------------------------------------------------------------------------------
# Pure helpers (tested in tests/test_time_to_quality.py)
# --------------------------------------------------------------------------------------


def esr(target: np.ndarray, prediction: np.ndarray) -> float:
    """Error-to-signal ratio sum((y - y_hat)^2) / sum(y^2), accumulated in float64."""
    target = np.asarray(target, dtype=np.float64).ravel()
    prediction = np.asarray(prediction, dtype=np.float64).ravel()
    if target.shape != prediction.shape:
        raise ValueError(f"target has {target.size} samples, prediction {prediction.size}")
    energy = float(np.sum(target**2))
    if energy == 0.0:
        raise ValueError("the target is silent: ESR is undefined")
    return float(np.sum((target - prediction) ** 2)) / energy


def concat_segments(segments: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Concatenate 1-D signals; return the result and the boundaries [0, n0, n0+n1, ...]."""
    arrays = [np.asarray(s, dtype=np.float32).ravel() for s in segments]
    bounds = [0]
    for a in arrays:
        bounds.append(bounds[-1] + a.size)
    joined = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)
    return joined, bounds


def split_segments(x: np.ndarray, bounds: list[int]) -> list[np.ndarray]:
    """Inverse of :func:`concat_segments`."""
    if bounds[0] != 0 or bounds[-1] != len(x):
        raise ValueError(f"boundaries {bounds[0]}..{bounds[-1]} do not span {len(x)} samples")
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def split_train_val(bounds: list[int], val_fraction: float) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Per file of a concatenation: (start, stop) of its first ``1 - val_fraction`` (train)
    and of its last ``val_fraction`` (validation), as nablafx's data module splits each
    trainval file (``int(n * (1 - val_fraction))`` samples to train)."""
    train, val = [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        cut = a + int((b - a) * (1.0 - val_fraction))
        train.append((a, cut))
        val.append((cut, b))
    return train, val


def pad_for_receptive_field(x: np.ndarray, receptive_field: int) -> np.ndarray:
    """Prepend ``receptive_field - 1`` zeros: a 'valid' causal model (output shorter than its
    input by ``receptive_field - 1``, as NAM's ``_forward``) then returns one sample per
    sample of ``x``, each computed from the input up to it with silence before the start."""
    if receptive_field < 1:
        raise ValueError(f"receptive_field must be >= 1, got {receptive_field}")
    x = np.asarray(x, dtype=np.float32).ravel()
    return np.concatenate([np.zeros(receptive_field - 1, dtype=np.float32), x])


def align_prediction(prediction: np.ndarray, n: int, receptive_field: int) -> np.ndarray:
    """Bring a model's output for an ``n``-sample input to ``n`` samples, sample-aligned.

    ``n`` samples: already aligned (input padded, or the model pads itself).
    ``n - (receptive_field - 1)``: a 'valid' output of the unpadded input; its first sample
    belongs to input sample ``receptive_field - 1``, so zeros are prepended for the first
    ``receptive_field - 1`` samples (they count as errors, never dropped). Anything else is
    an error.
    """
    prediction = np.asarray(prediction, dtype=np.float32).ravel()
    if prediction.size == n:
        return prediction
    if prediction.size == n - (receptive_field - 1):
        return np.concatenate([np.zeros(receptive_field - 1, dtype=np.float32), prediction])
    raise ValueError(
        f"prediction has {prediction.size} samples for an input of {n} with receptive field "
        f"{receptive_field}: expected {n} or {n - receptive_field + 1}"
    )


def max_time(seconds: float) -> str:
    """Lightning's ``max_time`` string DD:HH:MM:SS for a budget in whole seconds."""
    s = int(round(seconds))
    if s < 1:
        raise ValueError(f"budget must be >= 1 s, got {seconds}")
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{s:02d}"


def format_table(results: list[dict], families: list[str], budgets: list[str]) -> str:
    """Markdown table family x budget -> 'test ESR (steps)' of the best checkpoint."""
    by_key = {(r["family"], r["budget"]): r for r in results}
    lines = [
        "| family | " + " | ".join(budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for family in families:
        cells = []
        for budget in budgets:
            r = by_key.get((family, budget))
            if r is None:
                cells.append("")
            elif r.get("error"):
                cells.append("failed")
            else:
                cells.append(f"{r['test_esr']:.4g} ({r['steps']} steps)")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def read_wav(path: Path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE or audio.shape[1] != 1:
        raise ValueError(f"{path}: expected mono {SAMPLE_RATE} Hz, got {audio.shape[1]} ch at {rate} Hz")
    return audio[:, 0]


def write_pcm24(path: Path, x: np.ndarray) -> float:
    """Write mono 24-bit PCM (what NAM reads); return the largest round-trip error."""
    import soundfile as sf

    if np.max(np.abs(x)) > 1.0:
        raise ValueError(f"{path}: the audio exceeds full scale and would clip in PCM")
    sf.write(str(path), x, SAMPLE_RATE, subtype="PCM_24")
    return float(np.max(np.abs(read_wav(path) - x)))


def pairs(root: Path, split: str) -> list[dict]:
    """The (input, target) files of one split, in a fixed order (by dry file name)."""
    found = []
    for dry in sorted((root / "DRY" / split).glob("*.input.wav")):
        name = dry.name[: -len(".input.wav")]
        target = root / DEVICE_FOLDER / split / SETTING / f"{SETTING}.{name}.target.wav"
        if not target.exists():
            raise FileNotFoundError(f"no target for {dry}: {target}")
        found.append({"name": name, "input": str(dry), "target": str(target)})
    if not found:
        raise FileNotFoundError(f"no {split} files under {root / 'DRY' / split}")
    return found


def prepare_data(out: Path, seconds: float, test_seconds: float, quick: bool) -> dict:
    from nablafx.data.synth.render import render_dataset

    root = out / "data"
    if not (root / DEVICE_FOLDER / "test" / SETTING).exists():
        print(f"rendering {seconds:g} s + {test_seconds:g} s of the virtual overdrive into {root}", flush=True)
        render_dataset(root, device="overdrive", knobs=KNOBS, seconds=seconds, test_seconds=test_seconds, seed=SEED)
    info = {"root": str(root), "trainval": pairs(root, "trainval"), "test": pairs(root, "test")}
    for split, wanted in (("trainval", seconds), ("test", test_seconds)):
        have = sum(len(read_wav(Path(p["input"]))) for p in info[split]) / SAMPLE_RATE
        if abs(have - wanted) > 0.01:
            raise ValueError(f"{root} holds {have:g} s of {split} audio, not {wanted:g} s: use another --out")

    nam_dir = out / "nam-data"
    nam_dir.mkdir(parents=True, exist_ok=True)
    pcm_error = 0.0
    for split, stem_in, stem_out in (("trainval", "input", "output"), ("test", "test_input", "test_output")):
        x, bounds = concat_segments([read_wav(Path(p["input"])) for p in info[split]])
        y, bounds_y = concat_segments([read_wav(Path(p["target"])) for p in info[split]])
        if bounds != bounds_y:
            raise ValueError(f"{split}: inputs and targets differ in length")
        pcm_error = max(pcm_error, write_pcm24(nam_dir / f"{stem_in}.wav", x))
        pcm_error = max(pcm_error, write_pcm24(nam_dir / f"{stem_out}.wav", y))
        info[f"nam_{split}"] = {
            "input": str(nam_dir / f"{stem_in}.wav"),
            "output": str(nam_dir / f"{stem_out}.wav"),
            "bounds": bounds,
        }
    info["pcm24_max_error"] = pcm_error

    # Segment length and batch size are the trainer recipe's (capture.yaml sets them; it
    # comes after this file on the command line); --quick only shortens them for a recipe
    # that does not, so that its 0.5 s validation regions hold a segment.
    lines = [
        "# written by scripts/time_to_quality.py: the rendered capture, one setting, no knobs",
        "data:",
        f"  root: {root}",
        f"  device: {DEVICE_FOLDER}",
        f"  settings: [{SETTING}]",
        "  val_fraction: 0.1",
    ]
    if quick:
        lines += ["  segment_seconds: 0.25", "  batch_size: 4"]
    config = out / "data.yaml"
    config.write_text("\n".join(lines) + "\n")
    info["data_config"] = str(config)
    info["val_fraction"] = 0.1
    return info


# --------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("WANDB_MODE", "offline")
    return env


def trainer_config(explicit: str | None) -> str:
    if explicit:
        return explicit
    for candidate in TRAINER_CONFIGS:
        if (REPO / candidate).exists():
            return candidate
    raise FileNotFoundError(f"none of {TRAINER_CONFIGS} exists")


def run_logged(cmd: list[str], log: Path, env: dict, timeout: float) -> tuple[int, float]:
    start = time.monotonic()
    with open(log, "w") as handle:
        handle.write(" ".join(cmd) + "\n\n")
        handle.flush()
        try:
            rc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    return rc, time.monotonic() - start


def stopped_at(log: Path) -> float | None:
    """Seconds on Lightning's clock when its Timer stopped the run (None: it did not)."""
    try:
        match = re.search(r"Time limit reached\. Elapsed time is (\d+):(\d+):(\d+)", log.read_text(errors="replace"))
    except OSError:
        return None
    if not match:
        return None
    h, m, sec = (int(g) for g in match.groups())
    return float(h * 3600 + m * 60 + sec)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def predict_nablafx(ckpt: Path, inputs: list[np.ndarray]) -> tuple[np.ndarray, dict]:
    import torch

    from nablafx.core import process_in_blocks
    from nablafx.training import load_checkpoint

    net, meta = load_checkpoint(ckpt)
    outputs = []
    with torch.no_grad():
        for x in inputs:
            y, _ = process_in_blocks(net, torch.from_numpy(x)[None, None], None, block_size=48000)
            outputs.append(y[0, 0].numpy())
    return np.concatenate(outputs), meta


def run_nablafx(family: str, budget_s: float, run_dir: Path, data: dict, args, targets: np.ndarray, inputs) -> dict:
    from nablafx.training.checkpoint import read_checkpoint

    trainer_cfg = trainer_config(args.trainer_config)
    cmd = [
        sys.executable, "-m", "nablafx.cli", "fit",
        "-c", data["data_config"],
        "-c", NABLAFX_MODELS[family],
        "-c", trainer_cfg,
        "--trainer.max_time", max_time(budget_s),
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(run_dir),
        *shlex.split(args.fit_args or ""),
    ]
    result = {"trainer_config": trainer_cfg, "command": " ".join(cmd)}
    rc, wall = run_logged(cmd, run_dir / "fit.log", thread_env(args.threads), timeout=budget_s * 3 + 600)
    result.update(returncode=rc, process_wall_s=round(wall, 1), stopped_at_s=stopped_at(run_dir / "fit.log"))
    ckpts = sorted(run_dir.rglob("*.ckpt"))
    last = next((c for c in ckpts if c.name == "last.ckpt"), None)
    best = [c for c in ckpts if c.name.startswith("best-")]
    if rc != 0 or last is None:
        result["error"] = f"nablafx fit exited {rc}" + ("" if last else ", no last.ckpt") + "\n" + tail(run_dir / "fit.log")
        return result
    checkpoint = read_checkpoint(last)
    result["steps"] = int(checkpoint.get("global_step", -1))
    result["epochs"] = int(checkpoint.get("epoch", -1)) + 1
    timer = checkpoint.get("callbacks", {}).get("Timer", {})
    result["train_s"] = round(float(timer.get("time_elapsed", {}).get("train", float("nan"))), 1)
    chosen = {"best": best[-1] if best else last, "last": last}
    for which, path in chosen.items():
        prediction, meta = predict_nablafx(path, inputs)
        result[f"{which}_checkpoint"] = str(path)
        result["test_esr" if which == "best" else "test_esr_last"] = esr(targets, prediction)
        if which == "best":
            result["val_esr"] = meta.get("val_esr")
            result["latency"] = meta.get("latency")
            result["receptive_field"] = meta.get("receptive_field")
    return result


def run_nam(budget_s: float, run_dir: Path, data: dict, args, targets: np.ndarray) -> dict:
    spec = {
        "budget_s": budget_s,
        "threads": args.threads,
        "run_dir": str(run_dir),
        "train_input": data["nam_trainval"]["input"],
        "train_output": data["nam_trainval"]["output"],
        "bounds": data["nam_trainval"]["bounds"],
        "val_fraction": data["val_fraction"],
        "test_inputs": [p["input"] for p in data["test"]],
    }
    spec_path = run_dir / "nam_spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--nam-worker", str(spec_path)]
    rc, wall = run_logged(cmd, run_dir / "nam.log", thread_env(args.threads), timeout=budget_s * 3 + 600)
    result = {"command": " ".join(cmd), "returncode": rc, "process_wall_s": round(wall, 1),
              "stopped_at_s": stopped_at(run_dir / "nam.log")}
    report = run_dir / "nam_result.json"
    if rc != 0 or not report.exists():
        result["error"] = f"NAM worker exited {rc}\n" + tail(run_dir / "nam.log")
        return result
    worker = json.loads(report.read_text())
    result.update(worker)
    result["test_esr"] = esr(targets, np.load(run_dir / "pred_best.npy"))
    result["test_esr_last"] = esr(targets, np.load(run_dir / "pred_last.npy"))
    return result


# --------------------------------------------------------------------------------------
# NAM worker (a subprocess, so NAM's seeding, threads and Lightning state stay its own)
# --------------------------------------------------------------------------------------


def nam_worker(spec_path: str) -> int:
    import torch

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec["threads"]))

    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import Timer
    from torch.utils.data import DataLoader

    import nam
    from nam.data import Split, init_dataset
    from nam.train import core
    from nam.train._version import Version
    from nam.train.lightning_module import LightningModule

    run_dir = Path(spec["run_dir"])
    defaults = {k: v.default for k, v in inspect.signature(core.train).parameters.items() if v.default is not inspect._empty}
    settings = {
        "architecture": "standard",
        "model_type": defaults["model_type"],
        "lr": defaults["lr"],
        "lr_decay": defaults["lr_decay"],
        "batch_size": defaults["batch_size"],
        "ny": defaults["ny"],
        "fit_mrstft": defaults["fit_mrstft"],
        "seed": defaults["seed"],
    }
    torch.manual_seed(settings["seed"])
    # NAM's own configs, as train() builds them (its data config is for NAM's reamp file;
    # ours replaces it below). epochs: the budget stops training, not the epoch count.
    _, model_config, learning_config = core._get_configs(
        input_version=Version(3, 0, 0),
        input_path=spec["train_input"],
        output_path=spec["train_output"],
        latency=0,
        epochs=1_000_000,
        model_type=settings["model_type"],
        architecture=core.Architecture(settings["architecture"]),
        ny=settings["ny"],
        lr=settings["lr"],
        lr_decay=settings["lr_decay"],
        batch_size=settings["batch_size"],
        fit_mrstft=settings["fit_mrstft"],
    )
    model = LightningModule.init_from_config(model_config)
    rf = int(model.net.receptive_field)

    # Same split as nablafx: the last val_fraction of each trainval file validates.
    train_parts, val_parts = split_train_val(spec["bounds"], spec["val_fraction"])
    data_config = {
        "train": [{"start_samples": a, "stop_samples": b, "ny": settings["ny"]} for a, b in train_parts],
        "validation": [{"start_samples": a, "stop_samples": b, "ny": None} for a, b in val_parts],
        "common": {
            "x_path": spec["train_input"],
            "y_path": spec["train_output"],
            "delay": 0,
            "nx": rf,
            # the capture has no silences between its parts (NAM's reamp file does)
            "require_input_pre_silence": None,
        },
    }
    train_ds = init_dataset(data_config, Split.TRAIN)
    val_ds = init_dataset(data_config, Split.VALIDATION)
    model.net.sample_rate = train_ds.sample_rate
    train_dl = DataLoader(train_ds, **learning_config["train_dataloader"])
    val_dl = DataLoader(val_ds, **learning_config["val_dataloader"])

    trainer = pl.Trainer(
        callbacks=core.get_callbacks(threshold_esr=None),
        default_root_dir=str(run_dir),
        max_time=max_time(spec["budget_s"]),
        enable_progress_bar=False,
        **learning_config["trainer"],
    )
    started = time.monotonic()
    trainer.fit(model, train_dl, val_dl)
    fit_wall = time.monotonic() - started
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))

    test_inputs = [read_wav(Path(p)) for p in spec["test_inputs"]]

    def predict(lightning_module) -> np.ndarray:
        net = lightning_module.net.cpu().eval()
        outputs = []
        with torch.no_grad():
            for x in test_inputs:
                y = net(torch.from_numpy(pad_for_receptive_field(x, rf)), pad_start=False)
                outputs.append(align_prediction(y.numpy(), len(x), rf))
        return np.concatenate(outputs)

    np.save(run_dir / "pred_last.npy", predict(model))
    best_path = trainer.checkpoint_callback.best_model_path
    best = model
    if best_path:
        best = LightningModule.load_from_checkpoint(best_path, **LightningModule.parse_config(model_config))
    np.save(run_dir / "pred_best.npy", predict(best))

    score = trainer.checkpoint_callback.best_model_score
    (run_dir / "nam_result.json").write_text(json.dumps({
        "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "train_s": round(float(timer.time_elapsed("train")), 1),
        "fit_wall_s": round(fit_wall, 1),
        "best_checkpoint": best_path,
        "val_esr": None if score is None else float(score),
        "receptive_field": rf,
        "train_windows": len(train_ds),
        "nam_version": getattr(nam, "__version__", "?"),
        "nam_settings": settings,
        "lr_scheduler": model_config["lr_scheduler"],
        "loss": model_config["loss"],
        "torch_threads": torch.get_num_threads(),
    }, indent=2))
    return 0


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def environment(threads: int) -> dict:
    import torch

    def version(module: str) -> str:
        try:
            from importlib.metadata import version as v

            return v(module)
        except Exception:
            return "?"

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "nablafx": version("nablafx"),
        "nablafx_commit": commit,
        "neural-amp-modeler": version("neural-amp-modeler"),
        "python": platform.python_version(),
    }


def write_reports(out: Path, meta: dict, results: list[dict], families: list[str], budgets: list[str]) -> str:
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    table = format_table(results, families, budgets)
    rows = [
        "| family | budget | test ESR best | test ESR last | val ESR | steps | stopped at s | train s | process s | load before / after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("error"):
            rows.append(f"| {r['family']} | {r['budget']} | failed | | | | | {r.get('process_wall_s', '')} | |")
            continue
        val = r.get("val_esr")
        rows.append(
            f"| {r['family']} | {r['budget']} | {r['test_esr']:.4g} | {r['test_esr_last']:.4g} | "
            f"{'' if val is None else f'{val:.4g}'} | {r['steps']} | {r.get('stopped_at_s', '')} | {r.get('train_s', '')} | {r['process_wall_s']} | "
            f"{r['load_before']:.2f} / {r['load_after']:.2f} |"
        )
    md = [
        "# Time to quality",
        "",
        f"{meta['env']['date']}, {meta['env']['cpus']} CPUs, {meta['env']['threads']} threads per run, "
        f"torch {meta['env']['torch']}, nablafx {meta['env']['nablafx']} ({meta['env']['nablafx_commit']}), "
        f"neural-amp-modeler {meta['env']['neural-amp-modeler']}.",
        f"Capture: virtual overdrive {SETTING}, {meta['seconds']:g} s trainval (last 10 % of each file validates), "
        f"{meta['test_seconds']:g} s test. Trainer config for nablafx: {meta['trainer_config']}"
        + (f", extra fit options `{meta['fit_args']}`." if meta.get("fit_args") else "."),
        "",
        "Test ESR of the best checkpoint (steps done in the budget):",
        "",
        table,
        "",
        *rows,
        "",
        "stopped at s: Lightning's training clock when max_time stopped the run (checked after each "
        "optimiser step, so a run overshoots by up to one step plus whatever ran since the last check); "
        "train s: the same clock at the end, after the final validation and checkpoint; process s: the "
        "whole subprocess (start-up, data loading, training). Steps: optimiser steps done.",
        "",
        f"Alignment: {meta['alignment']}.",
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    return table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=float, nargs="+", help="minutes (seconds with --quick); default 3 6 12 (quick: 20)")
    parser.add_argument("--families", nargs="+", default=ALL_FAMILIES, choices=ALL_FAMILIES)
    parser.add_argument("--threads", type=int, default=2, help="torch/OMP threads of every run (default 2)")
    parser.add_argument("--out", type=Path, default=REPO / "logs" / "time-to-quality")
    parser.add_argument("--quick", action="store_true", help="smoke test: 10 s of audio, budgets in seconds")
    parser.add_argument("--trainer-config", help=f"nablafx trainer recipe (default: first of {TRAINER_CONFIGS} that exists)")
    parser.add_argument("--fit-args", help="extra options appended to every `nablafx fit`, e.g. "
                        "\"--data.segment_seconds 0.17 --model.loss '{mse: 1.0}'\"")
    parser.add_argument("--nam-worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.nam_worker:
        return nam_worker(args.nam_worker)
    import torch

    torch.set_num_threads(args.threads)
    budgets = args.budgets or ([20.0] if args.quick else [3.0, 6.0, 12.0])
    unit = 1.0 if args.quick else 60.0
    labels = [f"{b:g} {'s' if args.quick else 'min'}" for b in budgets]
    seconds, test_seconds = (10.0, 4.0) if args.quick else (60.0, 20.0)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    data = prepare_data(out, seconds, test_seconds, args.quick)
    inputs = [read_wav(Path(p["input"])) for p in data["test"]]
    targets = np.concatenate([read_wav(Path(p["target"])) for p in data["test"]])
    meta = {
        "env": environment(args.threads),
        "seconds": seconds,
        "test_seconds": test_seconds,
        "quick": args.quick,
        "trainer_config": trainer_config(args.trainer_config),
        "fit_args": args.fit_args,
        "data": data,
        "alignment": (
            "each test file is processed whole from silence by both toolkits: nablafx by "
            "process_in_blocks (48000-sample blocks, state carried), NAM by its net with "
            "receptive_field - 1 zeros prepended and pad_start=False, giving exactly one output "
            "sample per input sample; ESR over the concatenated test files against the float targets"
        ),
    }
    results: list[dict] = []
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for budget, label in zip(budgets, labels):
        for family in args.families:
            run_dir = out / "runs" / f"{stamp}-{family}-{label.replace(' ', '')}"
            run_dir.mkdir(parents=True, exist_ok=True)
            print(f"[{family} {label}] training in {run_dir}", flush=True)
            load_before = os.getloadavg()[0]
            try:
                if family == "nam":
                    result = run_nam(budget * unit, run_dir, data, args, targets)
                else:
                    result = run_nablafx(family, budget * unit, run_dir, data, args, targets, inputs)
            except Exception as error:  # keep the other runs going
                result = {"error": f"{type(error).__name__}: {error}"}
            result.update(family=family, budget=label, budget_s=budget * unit, run_dir=str(run_dir),
                          load_before=load_before, load_after=os.getloadavg()[0])
            results.append(result)
            if result.get("error"):
                print(f"[{family} {label}] FAILED: {result['error']}", flush=True)
            else:
                print(
                    f"[{family} {label}] test ESR {result['test_esr']:.4g} (last {result['test_esr_last']:.4g}), "
                    f"{result['steps']} steps, train {result.get('train_s')} s, process {result['process_wall_s']} s, "
                    f"load {load_before:.2f}->{result['load_after']:.2f}",
                    flush=True,
                )
            write_reports(out, meta, results, args.families, labels)
    table = write_reports(out, meta, results, args.families, labels)
    print()
    print(table)
    print(f"\nwrote {out / 'results.json'} and {out / 'results.md'}")
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
