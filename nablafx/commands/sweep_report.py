"""``nablafx sweep report DIR``: the comparison page of a sweep, from its run folders.

Writes ``report.html`` (self-contained: plots as inline SVG, audio as data: URIs, works
offline) and ``results.csv`` (one row per run) into DIR, or the HTML to ``--out`` with the
CSV next to it, and prints the HTML path. It reads only ``DIR/sweep.yaml`` and
``DIR/runs/<id>/`` (status.json, results.json, stdout.log, media), so it works on a sweep
still running or copied from another machine. See :mod:`nablafx.sweep.report`.
"""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "write report.html (leaderboard, Pareto plots, speed, curves, players, failures) and results.csv of a sweep folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the sweep folder (sweeps/<name>, holding sweep.yaml and runs/)")
    parser.add_argument(
        "--out", metavar="FILE", default=None,
        help="where to write the HTML (default DIR/report.html); results.csv goes next to it",
    )
    parser.add_argument(
        "--audio-seconds", type=float, default=None, metavar="S",
        help="seconds of each input/target/prediction clip embedded in the players (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    from nablafx.sweep.report import AUDIO_SECONDS, write_report

    seconds = AUDIO_SECONDS if getattr(args, "audio_seconds", None) is None else args.audio_seconds
    path = write_report(args.dir, args.out, audio_seconds=seconds)
    print(path)
    return 0
