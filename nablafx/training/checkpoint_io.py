"""How training writes and reads checkpoints: atomically, and without unpickling code.

Lightning's own writer stages the file in the system temporary folder and moves it into
place; across file systems (a tmpfs ``/tmp``) that move is a copy, and a kill during it
leaves a truncated checkpoint under the final name. Here the bytes go to a temporary
file beside the target, are flushed to disk, and replace the target with one
``os.replace``: a reader sees the old file or the new one, never part of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from nablafx.training.checkpoint import read_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints atomically; read them with ``torch.load(weights_only=True)`` only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)

    def load_checkpoint(
        self, path, map_location: Optional[Callable] = None, weights_only: Optional[bool] = None
    ) -> dict[str, Any]:
        # Whatever the caller asks, never unpickle code: resuming reads the same plain data.
        return read_checkpoint(path)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
