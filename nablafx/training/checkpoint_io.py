"""How training writes and reads checkpoints: atomically, and without unpickling code.

Lightning's own writer stages the file in the system temporary folder and moves it into
place; across file systems (a tmpfs ``/tmp``) that move is a copy, and a kill during it
leaves a truncated checkpoint under the final name. Here the bytes go to a temporary
file beside the target, are flushed to disk, and replace the target with one
``os.replace``: a reader sees the old file or the new one, never part of one.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from nablafx.files import replaced_atomically
from nablafx.training.checkpoint import read_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints atomically; read them with ``torch.load(weights_only=True)`` only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with replaced_atomically(path, durable=True) as temporary, open(temporary, "wb") as file:
            torch.save(checkpoint, file)

    def load_checkpoint(
        self, path, map_location: Optional[Callable] = None, weights_only: Optional[bool] = None
    ) -> dict[str, Any]:
        # Whatever the caller asks, never unpickle code: resuming reads the same plain data.
        return read_checkpoint(path)

