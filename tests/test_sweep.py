"""nablafx sweep: the sweep file, runs end to end with two workers, kill -9 and resume, retries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import soundfile as sf
import torch
import yaml

from nablafx.cli import main
from nablafx.errors import ConfigError, NablaError
from nablafx.sweep.spec import KEYS, load_sweep
from nablafx.sweep.study import open_storage

from conftest import write_tanh_pairs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    return write_tanh_pairs(tmp_path_factory.mktemp("pairs"), 2)


def base_config(folder: Path, pairs_root: Path) -> Path:
    """A tiny TCN on 2 s of tanh pairs: validation every 5 steps, one log line per step."""
    config = {
        "data": {"root": str(pairs_root), "segment_seconds": 0.1, "test_segment_seconds": 0.5, "batch_size": 2,
                 "pairs": {"train": [["a.input.wav", "a.target.wav"]], "test": [["b.input.wav", "b.target.wav"]]}},
        "model": {"net": {"class_path": "nablafx.models.TCN", "init_args": {"channels": 4, "num_blocks": 2}}},
        "trainer": {"accelerator": "cpu", "max_steps": 10, "val_check_interval": 5, "check_val_every_n_epoch": None,
                    "limit_val_batches": 1, "log_every_n_steps": 1, "enable_progress_bar": False,
                    "enable_model_summary": False},
        "media": {"every_n_validations": 1000, "model_plots": False},
    }
    path = folder / "base.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_sweep(folder: Path, **keys) -> Path:
    document = {"name": "tiny", "base": ["base.yaml"], "wandb": False, **keys}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def sweep_command(sweep: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nablafx.cli", "sweep", "run", str(sweep), "--out", str(out), "--threads", "1", *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def trials_by_point(out: Path, name: str = "tiny") -> dict[int, list[optuna.trial.FrozenTrial]]:
    study = optuna.load_study(study_name=name, storage=open_storage(str(out / name / "study.journal")))
    found: dict[int, list] = {}
    for trial in study.get_trials():
        if "point" in trial.user_attrs:
            found.setdefault(trial.user_attrs["point"], []).append(trial)
    return found


# --- the sweep file ----------------------------------------------------------------------------------


def test_grid_excludes_and_stable_ids(tmp_path):
    (tmp_path / "base.yaml").write_text("trainer: {max_steps: 5}\n")
    for name in ("small", "large"):
        (tmp_path / f"{name}.yaml").write_text(f"model: {{lr: {0.1 if name == 'small' else 0.2}}}\n")
    keys = dict(
        fixed={"trainer.max_steps": 20},
        axes={"model": {"small": "small.yaml", "large": "large.yaml"},
              "lr": {"key": "model.lr", "values": [0.001, 0.01]},
              "loss": {"l1": {"model.loss": {"l1": 1.0}}, "mse": {"model.loss": {"mse": 1.0}}}},
        seeds=[0, 1], exclude=[{"model": "large", "lr": 0.01}, {"loss": "mse", "seed": 1}],
        objective="test/l1", max_retries=2,
    )
    sweep = load_sweep(write_sweep(tmp_path, **keys))
    # 2 x 2 x 2 x 2 = 16; minus model=large,lr=0.01 (4), minus loss=mse,seed=1 (4), plus their overlap (1)
    assert len(sweep.points) == 9 and sweep.excluded == 7
    assert sweep.objective == "test/l1" and sweep.max_retries == 2
    assert not any(p.axes["model"] == "large" and p.axes["lr"] == 0.01 for p in sweep.points)
    assert not any(p.axes["loss"] == "mse" and p.seed == 1 for p in sweep.points)
    first = sweep.points[0]
    assert first.configs == ["base.yaml", "small.yaml"]
    assert first.overrides == {"trainer.max_steps": 20, "model.lr": 0.001, "model.loss": {"l1": 1.0},
                               "seed_everything": 0}
    ids = [p.id for p in sweep.points]
    assert len(set(ids)) == 9 and all(len(i) == 12 and int(i, 16) >= 0 for i in ids)

    # the same runs from a file written in another key order: the same ids
    reordered = {k: keys[k] for k in reversed(list(keys))}
    reordered["axes"] = {k: keys["axes"][k] for k in reversed(list(keys["axes"]))}
    again = load_sweep(write_sweep(tmp_path, **reordered))
    assert {(tuple(sorted(p.axes.items())), p.seed): p.id for p in again.points} == \
           {(tuple(sorted(p.axes.items())), p.seed): p.id for p in sweep.points}
    # a config file's content is part of the id
    (tmp_path / "small.yaml").write_text("model: {lr: 0.3}\n")
    changed = load_sweep(write_sweep(tmp_path, **keys))
    assert changed.points[0].id != first.id and changed.points[-1].id == sweep.points[-1].id


def test_unknown_key_names_the_file_the_key_and_the_allowed_keys(tmp_path):
    path = write_sweep(tmp_path, axes={"lr": {"key": "model.lr", "values": [1]}}, seed=[0])
    with pytest.raises(ConfigError) as error:
        load_sweep(path)
    message = str(error.value)
    assert str(path) in message and "'seed'" in message and ", ".join(KEYS) in message


@pytest.mark.parametrize("keys, match", [
    ({"axes": {"m": {"x": "missing.yaml"}}}, r"config file 'missing.yaml' not found"),
    ({"axes": {"lr": {"key": "model.lr"}}}, r"axes.lr: a key axis has exactly the keys `key` and `values`"),
    ({"axes": {"s": {"key": "seed_everything", "values": [1, 2]}}}, r"set by the sweep engine"),
    ({"axes": {"lr": {"key": "model.lr", "values": [1]}}, "exclude": [{"lr": 2}]}, r"exclude: lr=2 is not one of"),
    ({"axes": {"lr": {"key": "model.lr", "values": [1]}}, "exclude": [{"lr": 1}]}, r"removes every one of the 1"),
    ({"axes": {"lr": {"key": "model.lr", "values": [1]}}, "objective": "val/loss"}, r"must name a test metric"),
])
def test_bad_sweep_files_are_explained(tmp_path, keys, match):
    (tmp_path / "base.yaml").write_text("trainer: {max_steps: 5}\n")
    with pytest.raises(NablaError, match=match):
        load_sweep(write_sweep(tmp_path, **keys))


def test_shipped_sweeps_plan_their_grids(capsys):
    zoo = load_sweep(REPO / "cfg" / "sweep" / "zoo-quick.yaml")
    families = {p.axes["model"] for p in zoo.points}
    assert families == {"tcn", "gcn", "lstm", "s4", "wavenet", "graybox"} and len(zoo.points) == 6
    assert all(Path(c).name in ("synth-overdrive.yaml", "capture.yaml") for c in zoo.points[0].configs[:2])
    papers = load_sweep(REPO / "cfg" / "sweep" / "papers.yaml")
    assert len(papers.points) >= 20
    assert main(["sweep", "run", str(REPO / "cfg" / "sweep" / "zoo-quick.yaml"), "--plan"]) == 0
    assert "6 runs (0 excluded), objective test/esr" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "worker", "status", "report", "dashboard"])
def test_sweep_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", command, "--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out.lower()


def test_status_of_a_folder_that_is_no_sweep_is_explained(tmp_path, capsys):
    assert main(["sweep", "status", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a sweep folder (no runs/ in it)" in capsys.readouterr().err


def test_worker_for_a_study_that_does_not_exist_is_explained(tmp_path, capsys):
    assert main(["sweep", "worker", "--storage", str(tmp_path / "study.journal"), "--study", "nope"]) == 2
    assert "--study nope: no such study" in capsys.readouterr().err


def test_dashboard_of_a_folder_without_a_journal_is_explained(tmp_path, capsys):
    assert main(["sweep", "dashboard", str(tmp_path)]) == 2
    assert f"{tmp_path / 'study.journal'}: no study journal here" in capsys.readouterr().err


def test_dashboard_serves_the_sweeps_study(tmp_path):
    """optuna-dashboard's API, read over HTTP, lists the study in the folder's journal and its trials."""
    import socket
    import urllib.request

    study = optuna.create_study(storage=open_storage(str(tmp_path / "study.journal")), study_name="tiny")
    for value in (0.5, 0.25):
        study.tell(study.ask({"point": optuna.distributions.IntDistribution(0, 1)}), value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "nablafx.cli", "sweep", "dashboard", str(tmp_path), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, server.stdout.read() if server.poll() is not None else "no answer in 60 s"
        (summary,) = studies
        assert summary["study_name"] == "tiny"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}?after=0", timeout=5) as response:
            detail = json.load(response)
        assert sorted(trial["values"][0] for trial in detail["trials"]) == [0.25, 0.5]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_parallel_runs_render_the_synthetic_data_once(tmp_path, monkeypatch):
    import threading

    import nablafx.data.synth.render as render
    from nablafx.sweep.trial import prepare_data

    calls = []

    def slow_render(root, **synth):  # stands in for the minute-long render; the lock is what is tested
        calls.append(synth)
        time.sleep(0.5)
        (Path(root) / "Synth-Overdrive").mkdir(parents=True)

    monkeypatch.setattr(render, "render_dataset", slow_render)
    config = yaml.safe_dump({"data": {"root": str(tmp_path / "data" / "synth"), "device": "Synth-Overdrive",
                                      "synth": {"device": "overdrive", "seconds": 60}}})
    threads = [threading.Thread(target=prepare_data, args=([config], {"data.synth": {"device": "overdrive",
                                                                                     "seconds": 5}}))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [{"device": "overdrive", "seconds": 5}]  # once, with the override applied


# --- the claim guard (no training) --------------------------------------------------------------------


def test_a_point_is_never_claimed_by_two_live_trials_and_a_dead_workers_point_is_offered_again(tmp_path):
    from nablafx.sweep.runs import host, process_start
    from nablafx.sweep.study import claim, create_study, end_stale_trials, offer, point_states, tell

    (tmp_path / "base.yaml").write_text("trainer: {max_steps: 5}\n")
    sweep = load_sweep(write_sweep(tmp_path, axes={"lr": {"key": "model.lr", "values": [0.1, 0.2]}}, max_retries=1))
    study = create_study(sweep, str(tmp_path / "study.journal"))
    me = {"host": host(), "pid": os.getpid(), "pid_start": process_start(os.getpid())}
    first, a = claim(study, sweep, me)
    second, b = claim(study, sweep, me)
    assert {a, b} == {0, 1}
    # the grid is used up: Optuna's GridSampler offers a running point again; the claim gives it up
    third, why = claim(study, sweep, me)
    assert third is None and "holds it" in why
    assert study.get_trials()[-1].state == optuna.trial.TrialState.PRUNED

    # the worker of `first` is killed -9: its trial stays RUNNING with a pid that is gone
    gone = subprocess.Popen(["true"])
    gone.wait()
    first.set_user_attr("pid", gone.pid)
    trials = study.get_trials(deepcopy=False)
    assert end_stale_trials(study, trials) == 1
    trials = study.get_trials(deepcopy=False)
    assert point_states(sweep, trials) == {a: "todo", b: "running"}
    offer(study, sweep, trials, [a])  # failed trials count as visited for the GridSampler: enqueued
    again, point = claim(study, sweep, me)
    assert point == a

    # a failed run is retried max_retries times, then left failed
    for _ in range(2):
        assert point_states(sweep, study.get_trials(deepcopy=False))[a] == "running"
        again.set_user_attr("outcome", "failed")
        tell(study, again, state=optuna.trial.TrialState.FAIL)
        trials = study.get_trials(deepcopy=False)
        if point_states(sweep, trials)[a] == "failed":
            break
        offer(study, sweep, trials, [a])
        again, point = claim(study, sweep, me)
        assert point == a
    assert point_states(sweep, study.get_trials(deepcopy=False)) == {a: "failed", b: "running"}
    tell(study, second, 0.5)
    assert point_states(sweep, study.get_trials(deepcopy=False)) == {a: "failed", b: "finished"}


# --- running sweeps ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_train_every_point_once_and_record_it(tmp_path, pairs_root):
    base_config(tmp_path, pairs_root)
    sweep = write_sweep(tmp_path, axes={"channels": {"key": "model.net.init_args.channels", "values": [2, 4]}},
                        seeds=[0, 1], exclude=[{"channels": 4, "seed": 1}], wandb=True)
    done = subprocess.run(sweep_command(sweep, tmp_path / "out", "--workers", "2"), env=ENV, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 worker(s) x 1 thread(s)" in done.stdout and "3 runs: 3 finished" in done.stdout
    planned = load_sweep(sweep)
    runs = tmp_path / "out" / "tiny" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == sorted(p.id for p in planned.points)
    workers = set()
    for point in planned.points:
        run = runs / point.id
        results = json.loads((run / "results.json").read_text())
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "finished" and status["attempts"] == 1 and status["returncode"] == 0
        workers.add(status["pid"])
        assert results["schema"] == 1 and results["id"] == point.id and results["status"] == "finished"
        assert results["axes"] == point.axes and results["seed"] == point.seed
        assert results["overrides"]["model.net.init_args.channels"] == point.axes["channels"]
        assert results["family"] == "tcn" and results["conditioning"] == "none"
        assert results["objective"]["name"] == "test/esr"
        assert results["objective"]["value"] == results["test"]["esr"] > 0
        assert set(results["test"]) >= {"esr", "l1", "mrstft", "lufs_diff"}
        assert results["per_setting"][0]["setting"] == "no knobs" and "lufs_diff" in results["per_setting"][0]
        channels = point.axes["channels"]
        # input conv 1->C (k=3), 2 blocks C->C depthwise-residual, head C->1: the count grows with C
        assert results["params"] == sum(p.numel() for p in _tcn(channels).parameters())
        assert results["macs_per_sample"] > 0 and results["receptive_field"] > 1
        assert [row["block_size"] for row in results["speed"]] == [64, 128, 256, 512, 1024, 2048]
        assert all(row["times_real_time"] > 0 for row in results["speed"])
        assert results["train"]["steps"] == 10 and results["train"]["seconds"] > 0
        assert [step for step, _ in results["curves"]["train/loss"]] == list(range(10))
        assert [step for step, _ in results["curves"]["val/esr"]] == [4, 9]
        metrics = (run / "csv" / "attempt-1" / "metrics.csv").read_text()
        assert f"{results['curves']['val/esr'][-1][1]}" in metrics  # the logged value, not a made-up one
        for name in ("input", "target", "prediction"):
            audio, rate = sf.read(run / results["media"][name])
            assert rate == 48000 and 0 < len(audio) <= 2 * rate
        assert list((run / "wandb").glob("offline-run-*"))
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert results["packages"]["torch"] == torch.__version__.split("+")[0]
        assert results["code_version"].startswith("0.1.0")
        assert (run / "stdout.log").read_text().count("=== attempt") == 1
    assert len(workers) == 2  # both workers trained
    by_point = trials_by_point(tmp_path / "out")
    assert sorted(by_point) == [0, 1, 2]
    for trials in by_point.values():
        assert [t.state for t in trials].count(optuna.trial.TrialState.COMPLETE) == 1
        assert all(t.user_attrs.get("outcome") in ("finished", "duplicate") for t in trials)

    # the status table and a rerun that has nothing left to do
    status = subprocess.run([sys.executable, "-m", "nablafx.cli", "sweep", "status", str(tmp_path / "out" / "tiny")],
                            env=ENV, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "3 runs: 3 finished" in status.stdout
    assert all(p.id in status.stdout for p in planned.points) and "channels=4" in status.stdout
    again = subprocess.run(sweep_command(sweep, tmp_path / "out"), env=ENV, cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "0 run(s) trained here" in again.stdout, again.stdout + again.stderr


def _tcn(channels: int):
    from nablafx.models import TCN

    return TCN(channels=channels, num_blocks=2)


def test_a_failing_run_is_retried_then_left_failed_with_its_error(tmp_path, pairs_root):
    base_config(tmp_path, pairs_root)
    sweep = write_sweep(tmp_path, axes={"lr": {"key": "model.lr", "values": [0.005, "fast"]}}, max_retries=1)
    out = tmp_path / "out"
    done = subprocess.run(sweep_command(sweep, out, "--workers", "2"), env=ENV, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    good, bad = load_sweep(sweep).points
    assert json.loads((out / "tiny" / "runs" / good.id / "status.json").read_text())["state"] == "finished"
    status = json.loads((out / "tiny" / "runs" / bad.id / "status.json").read_text())
    assert status["state"] == "failed" and status["attempts"] == 2 and status["failures"] == 2
    assert status["returncode"] != 0 and "fast" in status["error"] and "fast" in status["log_tail"]
    assert not (out / "tiny" / "runs" / bad.id / "results.json").exists()
    assert (out / "tiny" / "runs" / bad.id / "stdout.log").read_text().count("=== attempt") == 2
    assert "1 failed" in done.stdout and "error:" in done.stdout
    outcomes = [t.user_attrs.get("outcome") for t in trials_by_point(out)[1]]
    assert outcomes.count("failed") == 2
    # no retries left: a rerun trains nothing and still reports the failure
    again = subprocess.run(sweep_command(sweep, out), env=ENV, cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 1 and "0 run(s) trained here" in again.stdout, again.stdout + again.stderr
    assert json.loads((out / "tiny" / "runs" / bad.id / "status.json").read_text())["attempts"] == 2


def wait_for_checkpoint(runs: Path, process: subprocess.Popen, min_step: int, timeout: float = 300):
    """(run folder, step) of the first run with a last.ckpt at >= min_step and no results yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for last in runs.glob("*/checkpoints/last.ckpt") if runs.is_dir() else []:
            try:
                step = torch.load(last, weights_only=True)["global_step"]
            except Exception:  # being replaced right now
                continue
            if step >= min_step and not (last.parent.parent / "results.json").exists():
                return last.parent.parent, step
        time.sleep(0.1)
    raise AssertionError(process.communicate(timeout=60)[0].decode()[-3000:])


@pytest.mark.slow
def test_sigterm_ends_the_running_trial_at_once_and_leaves_it_to_resume(tmp_path, pairs_root):
    base_config(tmp_path, pairs_root)
    sweep = write_sweep(tmp_path, fixed={"trainer.max_steps": 400},
                        axes={"channels": {"key": "model.net.init_args.channels", "values": [2]}})
    out = tmp_path / "out"
    process = subprocess.Popen(sweep_command(sweep, out), env=ENV, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        run, _ = wait_for_checkpoint(out / "tiny" / "runs", process, 10)
        process.send_signal(signal.SIGTERM)  # as a scheduler (Slurm) stops a job
        output = process.communicate(timeout=120)[0].decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, output[-3000:]
    assert "rerun the same command to resume it" in output
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "pending" and status["history"][0]["outcome"] == "interrupted"
    assert "=== attempt 1 interrupted" in (run / "stdout.log").read_text()
    (trial,) = trials_by_point(out)[0]
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["outcome"] == "interrupted"
    assert not (run / "results.json").exists() and (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_kill_9_of_the_sweep_then_rerun_resumes_and_trains_no_point_twice(tmp_path, pairs_root):
    base_config(tmp_path, pairs_root)
    sweep = write_sweep(tmp_path, fixed={"trainer.max_steps": 120},
                        axes={"channels": {"key": "model.net.init_args.channels", "values": [2, 3]}})
    out = tmp_path / "out"
    runs = out / "tiny" / "runs"
    process = subprocess.Popen(sweep_command(sweep, out), env=ENV, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        victim, killed_at = wait_for_checkpoint(runs, process, 20)
        os.killpg(process.pid, signal.SIGKILL)  # the sweep, its worker and the training, at once
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(0.5)
    status = json.loads((victim / "status.json").read_text())
    assert status["state"] == "running" and status["attempts"] == 1

    listed = subprocess.run([sys.executable, "-m", "nablafx.cli", "sweep", "status", str(out / "tiny")], env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert "interrupted" in listed.stdout, listed.stdout

    done = subprocess.run(sweep_command(sweep, out), env=ENV, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    status = json.loads((victim / "status.json").read_text())
    assert status["state"] == "finished" and status["attempts"] == 2
    resumed_from = status["history"][1]["resumed_from"]
    assert resumed_from is not None and resumed_from >= killed_at and resumed_from % 5 == 0
    log = (victim / "stdout.log").read_text()
    assert log.count("=== attempt") == 2 and log.count("from scratch") == 1
    assert f"resuming from checkpoints/last.ckpt at step {resumed_from}" in log
    results = json.loads((victim / "results.json").read_text())
    assert results["train"]["steps"] == 120 and results["train"]["attempts"] == 2
    steps = [step for step, _ in results["curves"]["train/loss"]]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 119  # both attempts, no step twice

    for point in load_sweep(sweep).points:
        run_status = json.loads((runs / point.id / "status.json").read_text())
        assert run_status["state"] == "finished"
        assert (runs / point.id / "stdout.log").read_text().count("from scratch") == 1
    for point, trials in trials_by_point(out).items():
        states = [t.state for t in trials]
        assert states.count(optuna.trial.TrialState.COMPLETE) == 1
    interrupted = [t for trials in trials_by_point(out).values() for t in trials
                   if t.user_attrs.get("outcome") == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0].state == optuna.trial.TrialState.FAIL
