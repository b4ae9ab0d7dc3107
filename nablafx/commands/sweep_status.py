"""``nablafx sweep status``: the runs of a sweep folder as a table, read from the run folders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nablafx.errors import MissingFileError
from nablafx.sweep.runs import RunFolder

NAME = "status"
HELP = "print the runs of a sweep folder: id, axes, seed, state, attempts, objective"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "example:\n  nablafx sweep status sweeps/zoo-quick"
    parser.add_argument("folder", help="the sweep folder (<out>/<name>, holding runs/)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")


def run_rows(folder: str | Path) -> list[dict]:
    """One row per run folder: id, axes, seed, state, attempts, failures, objective, error.

    ``state`` is the status file's, except ``interrupted`` for a run marked running whose
    worker (on this machine) is gone, and ``finished`` wherever ``results.json`` exists."""
    runs = Path(folder) / "runs"
    if not runs.is_dir():
        raise MissingFileError(f"{folder}: not a sweep folder (no runs/ in it); give <out>/<name>, e.g. sweeps/zoo-quick")
    rows = []
    for path in sorted(p for p in runs.iterdir() if (p / "overrides.yaml").is_file()):
        run = RunFolder(path)
        plan, status, results = run.plan(), run.status(), run.results()
        state = status.get("state", "pending")
        if results is not None:
            state = "finished"
        elif run.interrupted():
            state = "interrupted"
        objective = (results or {}).get("objective", {})
        rows.append({
            "id": plan["id"], "index": plan.get("index"), "axes": plan["axes"], "seed": plan["seed"], "state": state,
            "attempts": status.get("attempts", 0), "failures": status.get("failures", 0),
            "objective": objective.get("name", plan.get("objective")), "value": objective.get("value"),
            "error": status.get("error") if state == "failed" else None,
        })
    return sorted(rows, key=lambda row: (row["index"] is None, row["index"]))


def format_rows(rows: list[dict]) -> str:
    def axes_text(row):
        return " ".join(f"{k}={v}" for k, v in row["axes"].items())
    width = max([4] + [len(axes_text(row)) for row in rows])
    objective = next((row["objective"] for row in rows if row["objective"]), "objective")
    header = f"{'id':<12}  {'axes':<{width}}  {'seed':>4}  {'state':<11}  {'attempts':>8}  {objective:>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        value = "" if row["value"] is None else f"{row['value']:.5g}"
        lines.append(f"{row['id']:<12}  {axes_text(row):<{width}}  {row['seed']:>4}  {row['state']:<11}  "
                     f"{row['attempts']:>8}  {value:>12}")
        if row["error"]:
            lines.append(f"{'':<12}  error: {row['error']}")
    counts = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    lines.append(f"{len(rows)} runs: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = run_rows(args.folder)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(format_rows(rows))
    return 0
