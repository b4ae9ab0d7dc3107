"""``nablafx sweep run``: plan a sweep, create its study and train it with N local workers.

Rerunning the same command continues the sweep: finished runs are skipped, interrupted
ones (kill -9, power) resume from their ``last.ckpt``, failed ones are retried up to
``max_retries`` times, and no grid point is ever trained twice.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

from nablafx.commands.sweep_status import format_rows, run_rows
from nablafx.errors import ConfigError
from nablafx.files import write_text_atomically
from nablafx.sweep.runs import RunFolder, run_dir, sweep_dir
from nablafx.sweep.spec import KEYS, load_sweep
from nablafx.sweep.study import create_study
from nablafx.sweep.worker import available_cores

NAME = "run"
HELP = "train a sweep (a grid of configs, axes and seeds) with N local workers; rerun to resume"

EPILOG = f"""\
sweep file keys: {', '.join(KEYS)} (see nablafx/sweep/spec.py and the README)

examples:
  nablafx sweep run cfg/sweep/zoo-quick.yaml --workers 2
  nablafx sweep run cfg/sweep/papers.yaml --storage postgresql://user:pass@db-host/sweeps
  nablafx sweep run cfg/sweep/zoo-quick.yaml --plan     # print the grid, train nothing

Run folders: <out>/<name>/runs/<id>/ (overrides.yaml, status.json, stdout.log, checkpoints/,
results.json, media/, wandb/); `nablafx sweep status <out>/<name>` prints their table.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("sweep", help="the sweep YAML file")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1); the cores "
                        "are split between them (torch threads = cores // workers); 0: create the study and the "
                        "run folders only, for `nablafx sweep worker` processes elsewhere")
    parser.add_argument("--out", default="sweeps", help="output root: runs go to <out>/<name>/ (default sweeps)")
    parser.add_argument("--storage", default=None, help="study storage: default a journal file "
                        "<out>/<name>/study.journal; postgresql://... to let workers on other machines join")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: the cores this process may use // --workers)")
    parser.add_argument("--plan", action="store_true", help="print the planned runs and exit")


def worker_command(storage: str, name: str, out: str, threads: int) -> list[str]:
    return [sys.executable, "-m", "nablafx.cli", "sweep", "worker", "--storage", storage, "--study", name,
            "--out", out, "--threads", str(threads)]


def run(args: argparse.Namespace) -> int:
    if args.workers < 0:
        raise ConfigError(f"--workers {args.workers}: give 0 (create the study only) or more")
    sweep = load_sweep(args.sweep)
    if args.plan:
        for point in sweep.points:
            axes = " ".join(f"{k}={v}" for k, v in point.axes.items())
            print(f"{point.id}  {axes}  seed={point.seed}")
        print(f"{len(sweep.points)} runs ({sweep.excluded} excluded), objective {sweep.objective}")
        return 0
    folder = sweep_dir(args.out, sweep.name)
    folder.mkdir(parents=True, exist_ok=True)
    storage = args.storage or str((folder / "study.journal").resolve())
    create_study(sweep, storage)
    write_text_atomically(folder / "sweep.yaml", sweep.text)
    for point in sweep.points:
        RunFolder(run_dir(args.out, sweep.name, point.id)).write_plan(sweep, point)

    if args.workers == 0:
        print(f"sweep {sweep.name}: {len(sweep.points)} runs planned in {folder}, study {sweep.name} in "
              f"{storage.split('@')[-1]}; join with: nablafx sweep worker --storage URL --study {sweep.name}")
        return 0
    threads = args.threads or max(1, available_cores() // args.workers)
    print(f"sweep {sweep.name}: {len(sweep.points)} runs, {args.workers} worker(s) x {threads} thread(s), "
          f"folder {folder}, storage {storage.split('@')[-1]}", flush=True)
    workers = [subprocess.Popen(worker_command(storage, sweep.name, args.out, threads))
               for _ in range(args.workers)]

    def forward(signum, frame):  # SIGTERM to the sweep: to its workers, which end their trials resumably
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    # Ctrl-C reaches the workers by itself (one process group); the sweep just waits for them.
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
                signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: None)}
    try:
        codes = [worker.wait() for worker in workers]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    rows = [row for row in run_rows(folder) if row["id"] in {p.id for p in sweep.points}]
    print(format_rows(rows), flush=True)
    if any(code == 130 for code in codes):
        print("sweep interrupted: rerun the same command to resume it", file=sys.stderr)
        return 130
    if any(code != 0 for code in codes):
        print(f"nablafx: error: {sum(c != 0 for c in codes)} worker(s) exited with an error "
              f"(exit codes {codes}); see the output above", file=sys.stderr)
        return 1
    return 0 if all(row["state"] == "finished" for row in rows) else 1
