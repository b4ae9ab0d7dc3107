"""The ``nablafx`` command.

``fit | validate | test | predict`` are LightningCLI runs configured by YAML files
(``-c cfg/data/... -c cfg/model/... -c cfg/trainer/...``, any key overridable on the
command line). The other subcommands are plain tools: data synthesis and checks,
applying a checkpoint to a file, benchmarks and pretraining.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from nablafx.errors import NablaError

LIGHTNING_SUBCOMMANDS = {
    "fit": "train a model (LightningCLI; see `nablafx fit --help`)",
    "validate": "run the validation split on a checkpoint (--ckpt_path)",
    "test": "compute test metrics (L1, MR-STFT, ESR, MSE) on the test split (--ckpt_path)",
    "predict": "write predictions for the test split to the run folder (--ckpt_path)",
}

# (parent command or None, subcommand); the module is nablafx.commands.<parent>_<name> if there
# is one (sweep_run.py), else nablafx.commands.<name> (synth.py for `data synth`)
TOOL_COMMANDS = [
    ("data", "synth"),
    ("data", "check"),
    (None, "process"),
    (None, "export"),
    (None, "bench"),
    (None, "pretrain"),
    (None, "doctor"),
    ("sweep", "run"),
    ("sweep", "worker"),
    ("sweep", "status"),
    ("sweep", "report"),
    ("sweep", "dashboard"),
]


def run_lightning(argv: list[str]) -> None:
    try:
        from nablafx.lightning_cli import NablaCLI
    except (ImportError, OSError) as error:
        # A broken install (e.g. a torchaudio built for another torch) fails here, deep in an
        # import chain: name the package and the fix instead of a 40-line traceback.
        from nablafx.environment import FIX

        raise EnvironmentProblem(
            f"the training stack does not load ({type(error).__name__}: {str(error).splitlines()[0]}); "
            f"`nablafx doctor` lists which package is broken. Fix: {FIX}"
        ) from error
    NablaCLI(args=argv)


class EnvironmentProblem(NablaError):
    """An installed dependency does not load."""


def selected_tools(argv: list[str]) -> list[tuple[str | None, str]]:
    """The tool commands ``argv`` asks for; all of them for the top-level help.

    Importing only the chosen command's module keeps start-up short and one command's
    optional dependencies out of the others.
    """
    if argv:
        chosen = [(parent, name) for parent, name in TOOL_COMMANDS if (parent or name) == argv[0]]
        if chosen and chosen[0][0] is not None and len(argv) > 1:
            chosen = [(parent, name) for parent, name in chosen if name == argv[1]] or chosen
        if chosen:
            return chosen
    return TOOL_COMMANDS


def command_module(parent: str | None, name: str):
    """The module of a tool command: ``nablafx.commands.<parent>_<name>``, else ``.<name>``."""
    if parent is not None and importlib.util.find_spec(f"nablafx.commands.{parent}_{name}") is not None:
        return importlib.import_module(f"nablafx.commands.{parent}_{name}")
    return importlib.import_module(f"nablafx.commands.{name}")


def guarded(command) -> int:
    """Run ``command()``; a :class:`NablaError` (bad input: data, knobs, checkpoints, options) is
    the user's to fix, so it is printed as one line and gives exit code 2. Any other exception
    is a bug and keeps its traceback."""
    try:
        return int(command() or 0)
    except NablaError as error:
        if os.environ.get("NABLAFX_TRACEBACK"):
            raise
        print(f"nablafx: error: {error}", file=sys.stderr)
        return 2


def build_parser(tools: list[tuple[str | None, str]] = TOOL_COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nablafx",
        description="Differentiable audio effect modeling: train, check data, stream, export to plugins.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: nablafx fit -c cfg/quickstart.yaml",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in LIGHTNING_SUBCOMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    groups: dict[str, argparse._SubParsersAction] = {}
    for parent, module_name in tools:
        module = command_module(parent, module_name)
        if parent is None:
            target = subparsers
        else:
            if parent not in groups:
                group_parser = subparsers.add_parser(parent, help=f"{parent} tools")
                groups[parent] = group_parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
            target = groups[parent]
        sub = target.add_parser(
            module.NAME, help=module.HELP, description=module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def command() -> int:
        if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
            run_lightning(argv)
            return 0
        args = build_parser(selected_tools(argv)).parse_args(argv)
        return int(args.handler(args) or 0)

    return guarded(command)


if __name__ == "__main__":
    sys.exit(main())
