"""The project's error types: problems the user can fix, as opposed to bugs.

The ``nablafx`` command prints a :class:`NablaError` as one line (plus its fix) and
exits 2; any other exception is a bug in nablafx and keeps its traceback. Every type
derives from ``ValueError`` so code that guards against bad values keeps working.
"""

from __future__ import annotations


class NablaError(ValueError):
    """A problem with the user's input (config, data, checkpoint, command-line value)."""


class ConfigError(NablaError):
    """A model, block, data or training option that cannot work, named with the fix."""


class CheckpointError(NablaError):
    """A checkpoint that is missing, unreadable, foreign or does not fit its model."""


class MissingFileError(NablaError, FileNotFoundError):
    """A file the user named (audio, weights, artefact) does not exist."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """The checkpoint path names no file."""
