"""A synthetic sweep folder, as ``nablafx sweep run`` leaves it, for the report tests.

Grid: model {tcn-s, tcn-l, lstm-32, gb-peq} x cond {film, tfilm} x seed {0, 1} = 16 run
folders under ``sweeps/demo/runs/<id>/``: three families (tcn, lstm, graybox), two
conditionings, a parametric test set (per-setting metrics over two knobs, six settings),
0.25 s real wav files (16 kHz float) for input/target/prediction, and:

- ``lstm-32 / tfilm / seed 1`` failed (status.json error + a 60-line stdout.log);
- ``gb-peq / tfilm / seed 1`` is still running (no results.json);
- ``tcn-l / tfilm / seed 1`` finished but its results.json is truncated (not JSON);
- ``gb-peq / film / seed 1`` finished with a results.json of schema 99;
- ``lstm-32 / film / seed 0`` finished without the optional fields macs_per_sample, speed,
  curves, per_setting, media, packages (the report must show n/a, not crash).

So 12 runs finish with valid results; the configurations tcn-l/tfilm, lstm-32/tfilm,
gb-peq/film and gb-peq/tfilm have one valid seed each.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

SAMPLE_RATE = 16_000
MODELS = {  # model label -> (family, params, macs per sample, base ESR)
    "tcn-s": ("tcn", 12_000, 11_500, 0.08),
    "tcn-l": ("tcn", 95_000, 94_000, 0.03),
    "lstm-32": ("lstm", 4_500, 4_400, 0.05),
    "gb-peq": ("graybox", 300, 900, 0.20),
}
CONDITIONINGS = {"film": 1.0, "tfilm": 0.8}
SEEDS = (0, 1)
SETTINGS = [f"G={g:g} T={t:g}" for g in (0.0, 0.5, 1.0) for t in (0.0, 1.0)]
BLOCK_SIZES = (64, 128, 256, 512, 1024, 2048)

FAILED = ("lstm-32", "tfilm", 1)
RUNNING = ("gb-peq", "tfilm", 1)
BROKEN_JSON = ("tcn-l", "tfilm", 1)
WRONG_SCHEMA = ("gb-peq", "film", 1)
SPARSE = ("lstm-32", "film", 0)
SWEEP_YAML = {
    "name": "demo",
    "base": ["cfg/data/capture.yaml", "cfg/trainer/capture.yaml"],
    "axes": {
        "model": {label: f"cfg/model/{label}.yaml" for label in MODELS},
        "cond": {label: {"model.init_args.conditioning": label} for label in CONDITIONINGS},
    },
    "seeds": list(SEEDS),
    "objective": {"metric": "test/esr", "direction": "minimize"},
    "max_retries": 1,
}


@dataclass
class SweepFixture:
    folder: Path
    ids: dict[tuple[str, str, int], str]
    results: dict[str, dict] = field(default_factory=dict)  # id -> results.json of valid finished runs

    def id(self, model: str, cond: str, seed: int) -> str:
        return self.ids[(model, cond, seed)]


def run_id(overrides: dict) -> str:
    return hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:12]


def write_wav(path: Path, seed: int, gain: float) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE // 4) / SAMPLE_RATE
    x = 0.5 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, np.tanh(gain * x).astype(np.float32), SAMPLE_RATE, subtype="FLOAT")


def results_for(model: str, cond: str, seed: int, rid: str, rng: random.Random) -> dict:
    family, params, macs, base = MODELS[model]
    esr = round(base * CONDITIONINGS[cond] * (1 + 0.3 * rng.random()), 6)
    per_setting = [
        {"setting": s, "examples": 4, "esr": round(esr * (0.5 + i / 4), 6), "lufs_diff": round(rng.uniform(-1, 1), 3)}
        for i, s in enumerate(SETTINGS)
    ]
    speed_scale = 2e7 / macs
    return {
        "schema": 1,
        "id": rid,
        "sweep": "demo",
        "status": "finished",
        "axes": {"model": model, "cond": cond},
        "seed": seed,
        "overrides": {"model": f"cfg/model/{model}.yaml", "model.init_args.conditioning": cond, "seed_everything": seed},
        "family": family,
        "conditioning": cond,
        "objective": {"name": "test/esr", "value": esr},
        "test": {
            "esr": esr,
            "l1": round(0.01 + rng.random() * 0.02, 6),
            "mrstft": round(0.5 + rng.random(), 6),
            "lufs_diff": round(rng.uniform(-2, 2), 4),
        },
        "per_setting": per_setting,
        "params": params,
        "macs_per_sample": macs,
        "receptive_field": 0 if family == "lstm" else 2047,
        "speed": [{"block_size": b, "times_real_time": round(speed_scale * math.sqrt(b / 64), 3)} for b in BLOCK_SIZES],
        "train": {"seconds": round(100 + 50 * rng.random(), 2), "steps": 300, "epochs": 3},
        "curves": {
            "train/loss": [[step, round(1.0 / (1 + step / 20) + 0.01 * rng.random(), 5)] for step in range(0, 300, 15)],
            "val/esr": [[step, round(esr * (1 + 3 / (1 + step / 50)), 6)] for step in range(50, 301, 50)],
        },
        "media": {"input": "media/input.wav", "target": "media/target.wav", "prediction": "media/prediction.wav"},
        "code_version": "c977dd5",
        "packages": {"torch": "2.11.0", "lightning": "2.5.1", "optuna": "5.1.0"},
        "started": f"2026-12-03T05:{10 + seed:02d}:00Z",
        "ended": f"2026-12-03T05:{20 + seed:02d}:30Z",
        "host": "node-a" if seed == 0 else "node-b",
    }


def build_sweep(root: Path) -> SweepFixture:
    folder = Path(root) / "sweeps" / "demo"
    (folder / "runs").mkdir(parents=True)
    (folder / "sweep.yaml").write_text(yaml.safe_dump(SWEEP_YAML, sort_keys=False))
    fixture = SweepFixture(folder, {})
    rng = random.Random(1234)
    for model in MODELS:
        for cond in CONDITIONINGS:
            for seed in SEEDS:
                key = (model, cond, seed)
                overrides = {"model": model, "cond": cond, "seed": seed}
                rid = run_id(overrides)
                fixture.ids[key] = rid
                run = folder / "runs" / rid
                run.mkdir()
                (run / "overrides.yaml").write_text(yaml.safe_dump(overrides))
                results = results_for(model, cond, seed, rid, rng)
                status = {"state": "finished", "attempts": 1, "returncode": 0, "error": None,
                          "host": results["host"], "pid": 4000 + len(fixture.ids), "updated": results["ended"]}
                log = [f"epoch {e} step {s} loss {1 / (1 + s):.4f}" for e in range(3) for s in range(10)]
                if key == FAILED:
                    status.update(state="failed", attempts=2, returncode=1,
                                  error="RuntimeError: loss is NaN at step 120 (retried 1 time)")
                    log = [f"epoch 0 step {s} loss {1 / (1 + s):.4f}" for s in range(59)]
                    log.append("RuntimeError: loss is NaN at step 120 <see traceback>")
                    (run / "stdout.log").write_text("\n".join(log) + "\n")
                    (run / "status.json").write_text(json.dumps(status))
                    continue
                (run / "stdout.log").write_text("\n".join(log) + "\n")
                if key == RUNNING:
                    status.update(state="running", returncode=None, updated="2026-12-03T05:30:00Z")
                    (run / "status.json").write_text(json.dumps(status))
                    continue
                (run / "status.json").write_text(json.dumps(status))
                if key == BROKEN_JSON:
                    (run / "results.json").write_text(json.dumps(results)[:200])
                    continue
                if key == WRONG_SCHEMA:
                    (run / "results.json").write_text(json.dumps(dict(results, schema=99)))
                    continue
                if key == SPARSE:
                    for optional in ("macs_per_sample", "speed", "curves", "per_setting", "media", "packages"):
                        results.pop(optional)
                else:
                    (run / "media").mkdir()
                    for index, role in enumerate(("input", "target", "prediction")):
                        write_wav(run / "media" / f"{role}.wav", seed, 1.0 + index)
                (run / "results.json").write_text(json.dumps(results, indent=1))
                fixture.results[rid] = results
    return fixture
