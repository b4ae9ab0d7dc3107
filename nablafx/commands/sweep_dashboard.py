"""``nablafx sweep dashboard``: browse a sweep's Optuna study live in optuna-dashboard.

The report (``nablafx sweep report``) is the comparison page; the dashboard is for watching
a study while it runs: trials, their states and objective values, updated as workers report.
It serves on localhost only unless ``--host`` says otherwise, reads the same storage the
workers write (the journal file or the PostgreSQL URL), and needs the optional extra
``nablafx[dashboard]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nablafx.errors import ConfigError, MissingFileError

NAME = "dashboard"
HELP = "serve optuna-dashboard on a sweep's study (live trials; needs nablafx[dashboard])"

EPILOG = """\
examples:
  nablafx sweep dashboard sweeps/zoo-quick              # the journal file sweeps/zoo-quick/study.journal
  nablafx sweep dashboard --storage postgresql://user:pass@db-host/sweeps --port 8081
then open http://127.0.0.1:8080 (or the port given).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("folder", nargs="?", default=None,
                        help="the sweep folder (<out>/<name>) whose study.journal to open")
    parser.add_argument("--storage", default=None, help="the study storage instead: a journal file or an RDB URL")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port to serve on (default 8080)")


def storage_url(folder: str | None, storage: str | None) -> str:
    if (folder is None) == (storage is None):
        raise ConfigError("give one of: a sweep folder (nablafx sweep dashboard sweeps/<name>) or --storage URL")
    if storage is not None:
        return storage
    journal = Path(folder) / "study.journal"
    if not journal.is_file():
        raise MissingFileError(f"{journal}: no study journal here; give the folder `nablafx sweep run` made "
                               f"(<out>/<name>), or --storage for a PostgreSQL study")
    return str(journal)


def run(args: argparse.Namespace) -> int:
    url = storage_url(args.folder, args.storage)
    try:
        from optuna_dashboard import run_server
    except ImportError as error:
        raise ConfigError("the dashboard needs optuna-dashboard: pip install -c constraints.txt 'nablafx[dashboard]'") from error
    from nablafx.sweep.study import open_storage

    storage = open_storage(url)
    print(f"optuna-dashboard on {url}: http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        run_server(storage, host=args.host, port=args.port)
    except KeyboardInterrupt:
        pass
    return 0
