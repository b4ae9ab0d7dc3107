"""``nablafx sweep worker``: join a sweep's study and train its points until none is left.

Runs the same loop as the local workers of ``nablafx sweep run`` (:mod:`nablafx.sweep.worker`).
The study holds the whole plan (points, config texts), so another machine needs only the
storage URL and the study name -- and the data the configs name, at the same paths.
"""

from __future__ import annotations

import argparse
import signal

from nablafx.files import write_text_atomically
from nablafx.sweep.runs import sweep_dir
from nablafx.sweep.study import load_study
from nablafx.sweep.worker import available_cores, work

NAME = "worker"
HELP = "join a sweep from this machine: claim runs from the study and train them"

EPILOG = """\
examples:
  # a second machine (or a Slurm array task) joining a sweep started with --storage
  nablafx sweep worker --storage postgresql://user:pass@db-host/sweeps --study zoo-quick --out sweeps
  # one more local worker on a journal-file study
  nablafx sweep worker --storage sweeps/zoo-quick/study.journal --study zoo-quick

Relative data paths in the configs (data.root) are read from the current directory: start
workers from the repository root, as for `nablafx fit`.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--storage", required=True,
                        help="the study: a journal file (sweeps/<name>/study.journal) or an RDB URL (postgresql://...)")
    parser.add_argument("--study", required=True, help="the study name (the sweep's `name`)")
    parser.add_argument("--out", default="sweeps", help="where run folders go: <out>/<name>/runs/<id> (default sweeps)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: the cores this process may use)")
    parser.add_argument("--no-wait", action="store_true",
                        help="exit when no run is left to start, instead of waiting for runs of other workers "
                        "(which are taken over if their worker dies)")


def interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    study, sweep = load_study(args.study, args.storage)
    folder = sweep_dir(args.out, sweep.name)
    if not (folder / "sweep.yaml").is_file():
        write_text_atomically(folder / "sweep.yaml", sweep.text)
    threads = args.threads or available_cores()
    signal.signal(signal.SIGTERM, interrupt)  # a scheduler's stop: as Ctrl-C, the run is resumable
    try:
        trained = work(study, sweep, args.out, threads, wait=not args.no_wait)
    except KeyboardInterrupt:
        print("worker interrupted: its run is left to resume (rerun the sweep or start a worker)", flush=True)
        return 130
    print(f"worker done: {len(trained)} run(s) trained here: {' '.join(trained) or '-'}", flush=True)
    return 0
