"""The one error type for problems with a user's data.

Data problems are the user's to fix, so every message says three things: which file
(or folder), what is wrong with it (the offending value), and how to fix it.
"""

from __future__ import annotations

from os import PathLike

from nablafx.errors import NablaError


class DataError(NablaError):
    """A dataset problem the user can fix: bad file, missing folder, mismatched pair.

    ``DataError(problem, path, fix)`` formats as ``"<path>: <problem>\\n  fix: <fix>"``.
    ``path`` may name several files when the problem is between them (a pair).
    """

    def __init__(self, problem: str, path: str | PathLike | None = None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        message = problem if self.path is None else f"{self.path}: {problem}"
        if fix:
            message += f"\n  fix: {fix}"
        # Only the formatted message goes into ``args``: re-raising a pickled copy (from a
        # DataLoader worker) calls ``DataError(message)``, which formats to the same text.
        super().__init__(message)
