"""Load a trained model from a checkpoint alone, without unpickling code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nablafx.core import StreamModule, from_config


def load_checkpoint(path: str | Path) -> tuple[StreamModule, dict[str, Any]]:
    """Return ``(net, meta)``: the model in eval mode and what the checkpoint says about it.

    ``meta`` holds ``sample_rate``, ``num_knobs``, ``knob_names``, ``dataset``, ``val_esr``,
    ``receptive_field``, ``latency``, ``version`` and the net's config (``net``).
    The file is read with ``torch.load(weights_only=True)``: plain tensors and data only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; training writes checkpoints to "
            f"logs/<project>/<run>/checkpoints/ (last.ckpt and best-*.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({error})") from error
    if not isinstance(checkpoint, dict) or "nablafx" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path} is not a nablafx checkpoint (no 'nablafx' metadata); train with `nablafx fit` "
            f"to get one"
        )
    meta = dict(checkpoint["nablafx"])
    net = from_config(meta["net"])
    weights = {k[len("net.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(weights)
    net.eval()
    return net, meta
