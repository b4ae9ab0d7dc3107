"""One sweep run, in its own process: ``nablafx fit``, then ``test`` on the best checkpoint,
then the measures, then ``results.json``.

``python -m nablafx.sweep.trial RUN_DIR [nablafx fit options]`` -- started by a sweep worker
(:mod:`nablafx.sweep.worker`), which passes the run's config files, overrides, run folder,
loggers and, to resume, ``--ckpt_path RUN_DIR/checkpoints/last.ckpt``. Fit and test share
one process (one start-up, one data set-up); a resumed run whose training had already
ended goes straight to the test. ``results.json`` is written last, atomically: it exists
only for a run that finished (see :mod:`nablafx.sweep.results` for its keys).
"""

from __future__ import annotations

import fcntl
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from nablafx.errors import ConfigError


def merged_data_options(config_texts: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The ``data:`` options of a run: its config files in order, then ``data.*`` overrides."""
    data: dict[str, Any] = {}
    for text in config_texts:
        document = yaml.safe_load(text) or {}
        data.update((document.get("data") or {}) if isinstance(document, dict) else {})
    for key, value in overrides.items():
        if key.startswith("data."):
            data[key[len("data."):]] = value
    return data


def prepare_data(config_texts: list[str], overrides: dict[str, Any]) -> None:
    """Render a built-in synthetic dataset once, under a file lock, before the run needs it:
    parallel runs would otherwise each start rendering the same folder (called by the run's
    process, so a rendering error is that run's failure)."""
    data = merged_data_options(config_texts, overrides)
    synth, root, device = data.get("synth"), data.get("root"), data.get("device")
    if not (synth and root and device) or (Path(root) / device).is_dir():
        return
    Path(root).parent.mkdir(parents=True, exist_ok=True)
    lock = Path(root).parent / f".{Path(root).name}.render.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not (Path(root) / device).is_dir():
            from nablafx.data.synth.render import render_dataset

            render_dataset(root, **synth)


def run_trial(run: Path, fit_args: list[str]) -> dict:
    import torch

    from nablafx.commands.bench import static_report
    from nablafx.lightning_cli import NablaCLI
    from nablafx.sweep import results as measures
    from nablafx.sweep.runs import RESULTS_SCHEMA, RunFolder, host, now, write_json

    if os.environ.get("NABLAFX_THREADS"):
        torch.set_num_threads(int(os.environ["NABLAFX_THREADS"]))
    folder = RunFolder(run)
    plan, status = folder.plan(), folder.status()
    prepare_data([(run / copy).read_text() for copy in plan["config_copies"]], plan["overrides"])
    started = time.monotonic()
    cli = NablaCLI(args=["fit", *fit_args])
    fit_seconds = time.monotonic() - started
    trainer, module = cli.trainer, cli.model
    callback = trainer.checkpoint_callback
    best = (callback.best_model_path if callback is not None else "") or str(folder.last_checkpoint)
    if not Path(best).is_file():
        raise ConfigError(f"{run}: training wrote no checkpoint to test (no validation ran?); check "
                          f"trainer.max_steps and the validation interval of the sweep's configs")
    steps, epochs = trainer.global_step, trainer.current_epoch
    tested = trainer.test(module, datamodule=cli.datamodule, ckpt_path=best, verbose=False)[0]
    test = {key.split("/", 1)[1]: float(value) for key, value in tested.items()
            if key.startswith("test/") and "/setting/" not in key}
    objective = plan["objective"]
    if objective not in tested:
        raise ConfigError(f"{run}: the objective {objective} is not a test metric; test metrics: "
                          f"{', '.join(sorted(tested))}")
    net = module.net
    family, conditioning = measures.family_and_conditioning(module.hparams["net"])
    cost = static_report(net)
    # Earlier attempts (killed, resumed from last.ckpt) trained too: their wall time counts.
    earlier = sum(seconds_between(h.get("started"), h.get("ended"))
                  for h in status.get("history", [])[:-1] if h.get("outcome") == "interrupted")
    history = status.get("history", [])
    record = {
        "schema": RESULTS_SCHEMA,
        "id": plan["id"],
        "sweep": plan["sweep"],
        "status": "finished",
        "axes": plan["axes"],
        "seed": plan["seed"],
        "overrides": plan["overrides"],
        "configs": plan["configs"],
        "family": family,
        "conditioning": conditioning,
        "objective": {"name": objective, "value": finite_or_none(tested[objective])},
        "test": {name: finite_or_none(value) for name, value in test.items()},
        "per_setting": [{key: (finite_or_none(v) if isinstance(v, float) else v) for key, v in row.items()}
                        for row in getattr(module, "test_table", [])],
        "params": cost["params"],
        "macs_per_sample": cost["macs_per_sample"],
        "receptive_field": cost["receptive_field"],
        "speed": measures.speed(net, module.sample_rate or 48_000),
        "train": {"seconds": round(fit_seconds + earlier, 1), "steps": steps, "epochs": epochs,
                  "attempts": status.get("attempts", 1), "best_checkpoint": str(Path(best).relative_to(run))
                  if Path(best).is_relative_to(run) else best},
        "curves": measures.curves(run),
        "media": measures.media(run),
        "code_version": measures.code_version(),
        "packages": measures.packages(),
        "started": history[0]["started"] if history else None,
        "ended": now(),
        "host": host(),
    }
    write_json(folder.results_path, record)
    return record


def finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def seconds_between(start: str | None, end: str | None) -> float:
    import datetime

    if not start or not end:
        return 0.0
    return max(0.0, (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds())


def main(argv: list[str] | None = None) -> int:
    from nablafx.cli import guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m nablafx.sweep.trial RUN_DIR [nablafx fit options]", file=sys.stderr)
        return 2
    return guarded(lambda: run_trial(Path(argv[0]), argv[1:]) and 0)


if __name__ == "__main__":
    sys.exit(main())
