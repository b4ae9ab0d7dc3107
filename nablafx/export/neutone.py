"""Neutone FX export (``.nm``: TorchScript saved through ``neutone-sdk``).

The model is the traced streaming step of :mod:`nablafx.export.streaming` inside a
``WaveformToWaveformBase`` subclass (:class:`NeutoneEffect`) that keeps the state between
buffers, so the plugin streams any buffer size with no look-behind buffer and no delay
beyond the model's own latency (``calc_model_delay_samples``). Mono in, mono out; the
native sample rate is the model's (the plugin resamples the DAW's audio to it).

Knobs become Neutone parameters (at most :data:`MAX_KNOBS`, values 0-1, default 0.5),
named after the data's knobs; the SDK averages a parameter over each buffer, so a knob is
constant within a buffer. Neutone's metadata (name <= 30 characters, authors, short
description <= 150, long and technical descriptions <= 500, tags, version) comes from the
CLI options and the export metadata; the complete export metadata is stored in the
``.nm`` as the extra file ``nablafx.json`` beside the SDK's ``metadata.json``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nablafx.export.check import max_error, reference_output
from nablafx.export.errors import UnsupportedExport
from nablafx.export.metadata import ExportMetadata
from nablafx.export import torchscript

MAX_KNOBS = 4
METADATA_FILE = "nablafx.json"
LIMITS = {"name": 30, "short_description": 150, "long_description": 500, "technical_description": 500}


def _require_sdk() -> None:
    try:
        import neutone_sdk  # noqa: F401  (optional dependency, imported only when exporting)
    except ImportError:
        raise UnsupportedExport(
            "Neutone export needs neutone-sdk: pip install neutone-sdk (it pins numpy<2.3; with a newer "
            "numpy, pip install --no-deps neutone-sdk==1.5.2 jsonschema works as well)"
        ) from None


def neutone_info(metadata: ExportMetadata) -> dict:
    """Neutone's metadata strings, each within the SDK's length limits."""
    family_config = json.dumps(metadata.net["init_args"], separators=(",", ":"))
    technical = (
        f"nablafx {metadata.nablafx_version} {metadata.family} model {family_config}; "
        f"data {metadata.dataset or 'unknown'}; validation ESR {metadata.val_esr}; "
        f"{metadata.sample_rate or 'any'} Hz; latency {metadata.latency} samples; exported {metadata.date}"
    )
    info = {
        "name": metadata.name,
        "authors": [metadata.author] if metadata.author else ["nablafx"],
        "short_description": metadata.description or metadata.summary(),
        "long_description": metadata.description or metadata.summary(),
        "technical_description": technical[: LIMITS["technical_description"]],  # generated: cut to fit
        "tags": ["nablafx", metadata.family][:7],
    }
    for key, limit in LIMITS.items():
        if len(info[key]) > limit:
            raise UnsupportedExport(
                f"Neutone allows {limit} characters for the model's {key.replace('_', ' ')}; "
                f"{info[key]!r} has {len(info[key])} (pass a shorter --name/--description)"
            )
    return info


def check(net: nn.Module, metadata: ExportMetadata) -> None:
    if net.num_knobs > MAX_KNOBS:
        raise UnsupportedExport(
            f"Neutone FX offers at most {MAX_KNOBS} parameters; this model has {net.num_knobs} knobs"
        )
    _require_sdk()
    neutone_info(metadata)


def write(net: nn.Module, metadata: ExportMetadata, path: Path) -> None:
    _require_sdk()
    from neutone_sdk.utils import save_neutone_model

    from nablafx.export.neutone_effect import NeutoneEffect

    effect = NeutoneEffect(torchscript.streamer(net, metadata), metadata)
    with tempfile.TemporaryDirectory() as folder:
        # The SDK writes model.nm + metadata.json, reloads the model and tests its plugin
        # methods; our own check (verify) compares the audio afterwards.
        save_neutone_model(effect, Path(folder), dump_samples=False, submission=False,
                           speed_benchmark=False, test_offline_mode=False)
        saved = Path(folder) / "model.nm"
        extra = {"metadata.json": ""}
        module = torch.jit.load(str(saved), _extra_files=extra)
        extra[METADATA_FILE] = json.dumps(metadata.to_dict(), indent=2)
        torch.jit.save(module, str(saved), _extra_files=extra)
        shutil.move(str(saved), str(path))


@torch.no_grad()
def verify(path: Path, net: nn.Module, x: np.ndarray, knobs: np.ndarray,
           blocks: tuple[int, ...] = (64, 512)) -> dict[str, float]:
    """Load with the SDK (``load_neutone_model``) and render through its sample-queue wrapper,
    as the plugin does: DAW buffers of each size in ``blocks`` at the model's rate, knobs as
    parameters."""
    from neutone_sdk.utils import load_neutone_model

    model, _ = load_neutone_model(str(path))
    reference = reference_output(net, x, knobs)
    rate = model.get_native_sample_rates()[0] if model.get_native_sample_rates() else 48_000
    errors = {}
    for buffer in sorted(set(blocks)):
        model.set_daw_sample_rate_and_buffer_size(rate, buffer)
        delay = model.calc_buffering_delay_samples() + model.calc_model_delay_samples()
        total = -(-(len(x) + delay) // buffer) * buffer
        audio = torch.zeros(1, total)
        audio[0, : len(x)] = torch.from_numpy(x)
        params = torch.zeros(MAX_KNOBS, buffer)
        params[: len(knobs)] = torch.from_numpy(knobs).unsqueeze(-1)
        rendered = torch.cat([model.forward(chunk, params).clone() for chunk in audio.split(buffer, dim=1)], dim=1)
        errors[f"SDK wrapper, buffers of {buffer}"] = max_error(rendered[0, delay : delay + len(x)].numpy(), reference)
    return errors
