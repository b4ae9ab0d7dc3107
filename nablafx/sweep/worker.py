"""A sweep worker: claim a point from the study, train it in a subprocess, record it, repeat.

Every local worker of ``nablafx sweep run`` and every ``nablafx sweep worker`` on another
machine runs :func:`work`. Each run is one ``python -m nablafx.sweep.trial`` subprocess
(``nablafx fit`` then ``test`` on the best checkpoint, see :mod:`nablafx.sweep.trial`), so a
crash or a leak ends one run, not the sweep; the subprocess dies with its worker
(``PR_SET_PDEATHSIG``), so a killed worker leaves no orphan training.

Before training a claimed point the run folder decides what to do: ``results.json`` there
means finished (the study is told, nothing is trained); ``checkpoints/last.ckpt`` from an
interrupted attempt means resume with ``--ckpt_path``; after a failed attempt the next
retry starts afresh (the failed attempt's checkpoints move to ``checkpoints.attempt-N``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna
import yaml
from optuna.trial import TrialState

from nablafx.sweep import study as coordination
from nablafx.sweep.runs import RunFolder, host, now, process_start, run_dir, sweep_dir
from nablafx.sweep.spec import Point, Sweep, fit_arguments

POLL_SECONDS = 3.0


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def engine_arguments(sweep: Sweep, folder: RunFolder, attempt: int, resume: bool) -> list[str]:
    """The options the engine sets for every run: run folder, loggers, checkpoint path."""
    loggers = [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(folder.path), "name": "csv", "version": f"attempt-{attempt}",
                              # every step on disk: a kill loses no curve point before the checkpoint
                              "flush_logs_every_n_steps": 1}}]
    if sweep.wandb:
        loggers.append({"class_path": "lightning.pytorch.loggers.WandbLogger",
                        "init_args": {"save_dir": str(folder.path), "offline": True, "project": f"sweep-{sweep.name}",
                                      "name": folder.path.name}})
    args = [
        "--trainer.default_root_dir", str(folder.path),
        "--checkpoint.dirpath", str(folder.path / "checkpoints"),
        "--trainer.logger", yaml.safe_dump(loggers, default_flow_style=True).strip(),
    ]
    if resume:
        args += ["--ckpt_path", str(folder.last_checkpoint)]
    return args


def checkpoint_step(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True).get("global_step", 0))
    except Exception:  # unreadable: the run itself reports it when it loads the file
        return None


def last_error(folder: RunFolder) -> str:
    """The ``nablafx: error:`` line of the log, else its last non-empty line."""
    lines = [line for line in folder.log_tail(200).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("nablafx: error:"):
            return line[len("nablafx: error:"):].strip()
    return lines[-1].strip() if lines else "no output"


class Worker:
    """One worker process: ``run()`` loops until no point is left to train."""

    def __init__(self, study: optuna.Study, sweep: Sweep, out: str | Path, threads: int,
                 say: Callable[[str], None] | None = None, wait: bool = True):
        self.study, self.sweep, self.out, self.threads = study, sweep, Path(out), threads
        self.say = say or (lambda message: print(f"[worker {os.getpid()}] {message}", flush=True))
        self.wait = wait
        pid = os.getpid()
        self.identity = {"host": host(), "pid": pid, "pid_start": process_start(pid)}
        self.trained: list[str] = []

    def folder(self, point: Point) -> RunFolder:
        return RunFolder(run_dir(self.out, self.sweep.name, point.id))

    def run(self) -> list[str]:
        sweep_dir(self.out, self.sweep.name).mkdir(parents=True, exist_ok=True)
        duplicates = 0
        while True:
            trials = self.study.get_trials(deepcopy=False)
            if coordination.end_stale_trials(self.study, trials):
                trials = self.study.get_trials(deepcopy=False)
            states = coordination.point_states(self.sweep, trials)
            todo = [point for point, state in states.items() if state == "todo"]
            if not todo:
                if self.wait and "running" in states.values():
                    time.sleep(POLL_SECONDS)  # another worker may still die and leave its run to us
                    continue
                return self.trained
            coordination.offer(self.study, self.sweep, trials, todo, force=duplicates >= 2)
            trial, point = coordination.claim(self.study, self.sweep, self.identity)
            if trial is None:
                duplicates += 1
                self.say(f"skipped {point}")
                time.sleep(random.uniform(0.05, 0.5))  # two that gave up the same point do not meet again
                continue
            duplicates = 0
            self.train(trial, self.sweep.points[point])

    def train(self, trial: optuna.Trial, point: Point) -> None:
        folder = self.folder(point)
        folder.write_plan(self.sweep, point)
        results = folder.results()
        if results is not None:  # finished before its trial was told (worker killed just then)
            self.finish(trial, folder, results)
            return
        status = folder.status()
        attempt = status.get("attempts", 0) + 1
        history = list(status.get("history", []))
        if history and history[-1].get("ended") is None:  # killed: it ended at its last heartbeat
            history[-1].update(ended=status.get("updated"), outcome="interrupted")
        if history and history[-1].get("outcome") == "failed" and (folder.path / "checkpoints").is_dir():
            (folder.path / "checkpoints").rename(folder.path / f"checkpoints.attempt-{attempt - 1}")
        resume_step = checkpoint_step(folder.last_checkpoint) if folder.last_checkpoint.is_file() else None
        resume = resume_step is not None
        history.append({"attempt": attempt, "started": now(), "ended": None, "returncode": None,
                        "resumed_from": resume_step, "trial": trial.number, "host": host()})
        folder.update_status(state="running", attempts=attempt, host=host(), pid=os.getpid(),
                             pid_start=self.identity["pid_start"], trial=trial.number, returncode=None,
                             error=None, log_tail=None, history=history)
        configs = [str(folder.path / copy) for copy in folder.plan()["config_copies"]]
        command = [sys.executable, "-m", "nablafx.sweep.trial", str(folder.path),
                   *fit_arguments(configs, point.overrides),
                   *engine_arguments(self.sweep, folder, attempt, resume)]
        how = f"resuming from checkpoints/last.ckpt at step {resume_step}" if resume else "from scratch"
        self.say(f"run {point.id} {point.axes} seed {point.seed}: attempt {attempt}, {how}")
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "NABLAFX_THREADS": str(self.threads), "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
        with open(folder.log_path, "a") as log:
            log.write(f"=== attempt {attempt} on {host()} at {now()}, {how}, {self.threads} thread(s)\n"
                      f"=== {' '.join(command)}\n")
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       preexec_fn=_die_with_parent)
            try:
                returncode = self.watch(process, trial, folder)
            except KeyboardInterrupt:  # Ctrl-C / SIGTERM: end the trial now, the rerun resumes it
                process.kill()
                process.wait()
                log.write(f"=== attempt {attempt} interrupted\n")
                history[-1].update(ended=now(), outcome="interrupted")
                folder.update_status(state="pending", history=history)
                trial.set_user_attr("outcome", "interrupted")
                coordination.tell(self.study, trial, state=TrialState.FAIL)
                raise
            if returncode is None:
                log.write(f"=== attempt {attempt} stopped: trial {trial.number} was ended by another worker, "
                          f"which took the run over\n")
        if returncode is None:
            self.say(f"run {point.id}: lost the claim (this worker looked dead); left to the worker that took it")
            return
        history[-1].update(ended=now(), returncode=returncode)
        results = folder.results()
        if returncode == 0 and results is not None:
            history[-1]["outcome"] = "finished"
            folder.update_status(history=history)
            self.finish(trial, folder, results)
            return
        error = last_error(folder) if returncode != 0 else "the run ended without writing results.json"
        failures = status.get("failures", 0) + 1
        history[-1]["outcome"] = "failed"
        retry = failures <= self.sweep.max_retries
        folder.update_status(state="failed", failures=failures, returncode=returncode, error=error,
                             log_tail=folder.log_tail(), history=history, retrying=retry)
        trial.set_user_attr("outcome", "failed")
        trial.set_user_attr("error", error[:500])
        coordination.tell(self.study, trial, state=TrialState.FAIL)
        left = f"retry {failures} of {self.sweep.max_retries} next" if retry else "no retries left"
        self.say(f"run {point.id} failed (exit {returncode}): {error} ({left})")

    def watch(self, process: subprocess.Popen, trial: optuna.Trial, folder: RunFolder) -> int | None:
        """Wait for the run, beating the heart on the trial and the status file. None: the claim
        was lost (this worker looked dead -- e.g. suspended for longer than STALE_SECONDS -- and
        its trial was ended by another worker, which resumes the run): the training stops."""
        while True:
            try:
                return process.wait(timeout=coordination.HEARTBEAT_SECONDS)
            except subprocess.TimeoutExpired:
                if self.study._storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
                    process.kill()
                    process.wait()
                    return None
                trial.set_user_attr("heartbeat", time.time())
                folder.update_status()

    def finish(self, trial: optuna.Trial, folder: RunFolder, results: dict) -> None:
        value = results.get("objective", {}).get("value")
        value = float("inf") if value is None or value != value else float(value)  # NaN: worst, never best
        trial.set_user_attr("outcome", "finished")
        coordination.tell(self.study, trial, value)
        folder.update_status(state="finished", returncode=0, error=None, log_tail=None)
        self.trained.append(folder.path.name)
        self.say(f"run {folder.path.name} finished: {results['objective']['name']} = {value:.4g}")


def work(study: optuna.Study, sweep: Sweep, out: str | Path, threads: int | None = None, wait: bool = True) -> list[str]:
    return Worker(study, sweep, out, threads or available_cores(), wait=wait).run()
