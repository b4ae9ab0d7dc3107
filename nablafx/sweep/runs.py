"""Run folders: the record of a sweep (the report reads these, never the engine).

::

    <out>/<sweep>/sweep.yaml            copy of the sweep file
    <out>/<sweep>/study.journal         the Optuna study (default storage)
    <out>/<sweep>/runs/<id>/overrides.yaml   what the run is: axes, seed, config files, overrides
                           configs/          the config files it was trained with (copies)
                           status.json       pending | running | finished | failed, attempts, ...
                           stdout.log        the training output of every attempt
                           checkpoints/      last.ckpt and the best by validation loss
                           csv/attempt-N/    Lightning CSV logs (training curves)
                           wandb/            wandb offline runs
                           media/            audio examples and figures
                           results.json      written once, atomically, when the run finished

``status.json`` keys: ``state``, ``attempts`` (training starts, resumes included), ``failures``
(attempts that ended with an error), ``retrying`` (after a failure: whether a retry is left),
``returncode``, ``error``, ``log_tail``, ``host``, ``pid`` and ``pid_start`` (the worker's),
``trial`` (Optuna trial number), ``updated`` (UTC ISO time, refreshed by the heartbeat),
``history`` (one entry per attempt: ``attempt``, ``started``, ``ended``, ``returncode``,
``resumed_from`` (checkpoint step or null), ``trial``, ``host``, ``outcome`` finished |
failed | interrupted).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path
from typing import Any

import yaml

from nablafx.files import write_text_atomically

STATES = ("pending", "running", "finished", "failed")
RESULTS_SCHEMA = 1
LOG_TAIL_LINES = 40


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def host() -> str:
    return socket.gethostname()


def write_json(path: Path, data: Any) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def sweep_dir(out: str | Path, name: str) -> Path:
    return Path(out) / name


def run_dir(out: str | Path, name: str, run_id: str) -> Path:
    return sweep_dir(out, name) / "runs" / run_id


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot) or None if there is none:
    a pid and its start time name one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if not Path("/proc/self/stat").exists():  # no /proc: fall back to a signal probe
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                return "unknown"
            return "unknown"
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields and fields[0] == "Z":  # a zombie has finished
        return None
    return fields[19] if len(fields) > 19 else "unknown"


def alive(pid: int | None, start: str | None) -> bool:
    """Whether the process (``pid``, its start time) still runs on this machine."""
    if not pid:
        return False
    current = process_start(int(pid))
    return current is not None and (start is None or current == "unknown" or current == start)


class RunFolder:
    """One run's folder and its ``status.json``."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.ckpt"

    @property
    def log_path(self) -> Path:
        return self.path / "stdout.log"

    def status(self) -> dict:
        return read_json(self.status_path) or {"state": "pending", "attempts": 0, "failures": 0, "history": []}

    def results(self) -> dict | None:
        return read_json(self.results_path)

    def update_status(self, **changes) -> dict:
        status = self.status()
        status.update(changes)
        status["updated"] = now()
        write_json(self.status_path, status)
        return status

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def write_plan(self, sweep, point) -> None:
        """overrides.yaml and configs/ (once; the id guarantees they never change)."""
        if (self.path / "overrides.yaml").is_file():
            return
        copies = []
        for number, config in enumerate(point.configs):
            copy = self.path / "configs" / f"{number:02d}-{Path(config).name}"
            write_text_atomically(copy, sweep.configs[config])
            copies.append(str(copy.relative_to(self.path)))
        plan = {
            "id": point.id, "sweep": sweep.name, "index": point.index, "axes": point.axes, "seed": point.seed,
            "objective": sweep.objective, "configs": point.configs, "config_copies": copies,
            "overrides": point.overrides,
        }
        write_text_atomically(self.path / "overrides.yaml", yaml.safe_dump(plan, sort_keys=False))
        if not self.status_path.is_file():
            self.update_status(state="pending", attempts=0, failures=0, history=[])

    def plan(self) -> dict:
        return yaml.safe_load((self.path / "overrides.yaml").read_text())

    def interrupted(self) -> bool:
        """Status says running but its worker is gone (on this machine)."""
        status = self.status()
        return (
            status.get("state") == "running" and status.get("host") == host()
            and not alive(status.get("pid"), status.get("pid_start"))
        )
