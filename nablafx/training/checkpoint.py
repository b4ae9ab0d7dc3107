"""Load a trained model from a checkpoint alone, without unpickling code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from nablafx.core import StreamModule, from_config
from nablafx.errors import CheckpointError, MissingCheckpointError, NablaError
from nablafx.processors.siren import skip_pretrained_init


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, read with ``torch.load(weights_only=True)``.

    Only tensors and plain data are accepted: a file that would need to unpickle code
    (a foreign or tampered checkpoint) is refused without running any of it.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(
            f"checkpoint {path} does not exist; training writes checkpoints to "
            f"logs/<project>/<run>/checkpoints/ (last.ckpt and best-*.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line or "global" in line]
        if found:
            # weights_only refused an object it would have had to build by running code.
            raise CheckpointError(
                f"{path}: refused to load: it holds objects other than tensors and plain data "
                f"({found[0]}); only load checkpoints written by `nablafx fit`, from sources you trust"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (corrupt pickle data); it may be truncated: "
            f"use last.ckpt or best-*.ckpt of the run"
        ) from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
            f"it may be truncated: use last.ckpt or best-*.ckpt of the run"
        ) from None
    if not isinstance(checkpoint, dict) or "nablafx" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a nablafx checkpoint (no 'nablafx' metadata); train with `nablafx fit` "
            f"to get one"
        )
    return checkpoint


def load_checkpoint(path: str | Path) -> tuple[StreamModule, dict[str, Any]]:
    """Return ``(net, meta)``: the model in eval mode and what the checkpoint says about it.

    ``meta`` holds ``sample_rate``, ``num_knobs``, ``knob_names``, ``dataset``, ``val_esr``,
    ``receptive_field``, ``latency``, ``version`` and the net's config (``net``).
    The model is rebuilt from its plain-data config (only ``nablafx`` classes) without
    reading any pretrained-initialisation file: the checkpoint's weights replace them.
    """
    checkpoint = read_checkpoint(path)
    meta = dict(checkpoint["nablafx"])
    try:
        with skip_pretrained_init():
            net = from_config(meta["net"])
    except NablaError as error:
        raise CheckpointError(f"{path}: its model config cannot be built here: {error}") from None
    except (TypeError, ImportError, AttributeError) as error:
        raise CheckpointError(
            f"{path}: its model config names classes or arguments this nablafx "
            f"{_installed_version()} lacks ({error}); it was written by nablafx "
            f"{meta.get('version', '?')}: load it with that version"
        ) from None
    weights = {k[len("net.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    load_weights(net, weights, path)
    net.eval()
    return net, meta


def load_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """``net.load_state_dict(weights)``, with a message that lists what does not fit."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    mismatched = [
        f"{name} {tuple(weights[name].shape)} vs {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in weights and weights[name].shape != tensor.shape
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape (file vs model)", mismatched)):
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            problems.append(f"{len(names)} {label}: {shown}")
    if problems:
        raise CheckpointError(
            f"{path}: its weights do not fit the model its config describes ({'; '.join(problems)}); "
            f"the file was edited or written by another nablafx version "
            f"({_installed_version()} here): retrain, or load it with the version that wrote it"
        )
    net.load_state_dict(weights)


def _installed_version() -> str:
    import nablafx

    return nablafx.__version__
