"""Two sweep workers on different "machines" (separate processes and run folders) sharing one
study in a real PostgreSQL server started here: the grid is split, no point runs twice."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from nablafx.sweep.spec import load_sweep
from nablafx.sweep.study import open_storage

from conftest import write_tanh_pairs
from test_sweep import ENV, base_config, write_sweep

pytestmark = pytest.mark.slow


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found and shutil.which("initdb"):
        found = [shutil.which("initdb")]
    if not found:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH; "
                    "install them: apt-get install postgresql")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a unix socket in a temporary folder; its URL."""
    binaries = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="nablafx-pg-"))  # /tmp: reachable by the postgres user
    as_server = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_server = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    log = root / "server.log"
    subprocess.run([*as_server, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "nablafx"],
                   check=True, capture_output=True, timeout=120)
    started = subprocess.run(
        [*as_server, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
         "-o", f"-p {port} -k {root} -c listen_addresses=''", "start"],
        capture_output=True, text=True, timeout=120,
    )
    assert started.returncode == 0, started.stdout + started.stderr + (log.read_text() if log.exists() else "")
    try:
        yield f"postgresql://nablafx@/postgres?host={root}&port={port}"
    finally:
        subprocess.run([*as_server, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_against_postgres_split_the_grid(tmp_path, postgres_url):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    write_tanh_pairs(pairs, 2)
    base_config(tmp_path, pairs)
    sweep = write_sweep(tmp_path, axes={"channels": {"key": "model.net.init_args.channels", "values": [2, 3]}},
                        seeds=[0, 1])
    planned = load_sweep(sweep)
    cli = [sys.executable, "-m", "nablafx.cli", "sweep"]
    created = subprocess.run([*cli, "run", str(sweep), "--storage", postgres_url, "--workers", "0", "--out",
                              str(tmp_path / "main")], env=ENV, cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    assert created.returncode == 0, created.stdout + created.stderr
    assert "4 runs planned" in created.stdout

    # two "machines": separate processes, separate run folders, only the database in common
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    workers = [subprocess.Popen([*cli, "worker", "--storage", postgres_url, "--study", "tiny", "--out", str(out),
                                 "--threads", "1"], env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for out in outs]
    logs = [worker.communicate(timeout=900)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], "\n".join(log[-3000:] for log in logs)

    trained = [{p.name for p in (out / "tiny" / "runs").glob("*") if (p / "results.json").is_file()} for out in outs]
    assert trained[0] and trained[1], logs  # both workers got a share
    assert not trained[0] & trained[1]       # no point on both
    assert trained[0] | trained[1] == {p.id for p in planned.points}
    for out, ids in zip(outs, trained):
        for run_id in ids:
            run = out / "tiny" / "runs" / run_id
            status = json.loads((run / "status.json").read_text())
            assert status["state"] == "finished" and status["attempts"] == 1
            assert (run / "stdout.log").read_text().count("=== attempt") == 1
            assert json.loads((run / "results.json").read_text())["objective"]["value"] > 0

    study = optuna.load_study(study_name="tiny", storage=open_storage(postgres_url))
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["point"] for t in complete) == [0, 1, 2, 3]
    assert {t.user_attrs["pid"] for t in complete} == {w.pid for w in workers}
    assert all(t.user_attrs["outcome"] in ("finished", "duplicate") for t in study.get_trials())
