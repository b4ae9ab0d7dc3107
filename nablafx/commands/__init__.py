"""Subcommands of ``nablafx`` that are not Lightning runs.

Each module here exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""
