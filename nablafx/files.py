"""Writing a file so that a reader, a crash or a kill -9 never sees part of it.

Every writer in nablafx (checkpoints, exported artefacts, rendered datasets, processed
audio, sweep records) writes to a hidden temporary file beside the target and moves it into
place with one ``os.replace``: the target is the old file or the new one, never half of
either, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replaced_atomically(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, the file
    written there replaces ``path``, otherwise it is removed.

    The temporary name keeps the target's extension last (``.name.XXXX.partial.wav``), so
    writers that pick the format from it (soundfile) still do. ``durable`` also flushes the
    file and the rename to disk (fsync), for files a power cut must not lose (checkpoints).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}",
                                    dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if durable:
            _fsync(temporary)
        os.replace(temporary, target)
        if durable:
            _fsync(target.parent)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`replaced_atomically`."""
    with replaced_atomically(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _fsync(path: Path) -> None:
    """Flush a file or a folder (the rename itself, on POSIX) to disk; a no-op where the
    system cannot open folders."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
