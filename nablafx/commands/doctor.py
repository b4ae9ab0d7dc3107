"""``nablafx doctor``: check that the installed dependencies load and match the tested set."""

from __future__ import annotations

import argparse
import platform
import sys

from nablafx.environment import CONSTRAINTS, check_environment, report

NAME = "doctor"
HELP = (
    "check the environment: every core dependency imports, torch and torchaudio are a matching "
    "pair, versions match constraints.txt; exit 1 with the fix otherwise"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    findings = check_environment()
    problems = [f for f in findings if f.problem]
    if not args.quiet or problems:
        where = CONSTRAINTS if CONSTRAINTS.is_file() else "none found (installed from a wheel)"
        print(f"python {platform.python_version()} ({sys.executable}); constraints: {where}")
        print(report(findings if not args.quiet else problems))
    return 1 if problems else 0
