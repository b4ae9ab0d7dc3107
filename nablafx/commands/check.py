"""``nablafx data check DIR``: report every problem of a dataset before training on it."""

from __future__ import annotations

import argparse

from nablafx.data.checks import check_dataset

NAME = "check"
HELP = (
    "check a ToneTwist-layout dataset: readable mono files, sample rates, lengths, NaN/inf, "
    "silence, clipping, DC offset and input/target latency"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", metavar="DIR", help="dataset folder: the one holding DRY/ and the device folders"
    )
    parser.add_argument("--device", default=None, help="check only this device folder (default: all)")


def run(args: argparse.Namespace) -> int:
    """Print the report; exit status 1 when any file has an error, else 0."""
    report = check_dataset(args.dir, device=args.device)
    print(report)
    return 0 if report.ok else 1
