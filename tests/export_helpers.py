"""Small models of every exportable family and checkpoint writing, shared by the export tests."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import nablafx
from nablafx.core import to_config
from nablafx.export.metadata import ExportMetadata
from nablafx.models import GCN, RNN, S4, TCN, GrayBoxChain
from nablafx.models.wavenet import WaveNet

SAMPLE_RATE = 48_000

#: name -> model factory; small sizes keep tracing and checks fast but keep every code path.
FACTORIES = {
    "tcn": lambda: TCN(channels=8, num_blocks=3, kernel_size=5, dilation_growth=4),
    "tcn-film-k2": lambda: TCN(num_knobs=2, channels=8, num_blocks=3, kernel_size=5, conditioning="film"),
    "gcn": lambda: GCN(channels=8, num_blocks=3, kernel_size=5, dilation_growth=4),
    "s4": lambda: S4(channels=8, num_blocks=2, state_size=4),
    # block-rate control (compiled before tracing, see nablafx.controllers.block_rate)
    "tcn-tvfilm": lambda: TCN(channels=8, num_blocks=2, kernel_size=5, conditioning="tvfilm", control_block_size=32),
    "gcn-tfilm-k1": lambda: GCN(num_knobs=1, channels=4, num_blocks=2, kernel_size=3, conditioning="tfilm",
                                control_block_size=16),
    "tcn-ttfilm-k2": lambda: TCN(num_knobs=2, channels=8, num_blocks=2, kernel_size=5, conditioning="ttfilm",
                                 control_block_size=24),
    "lstm-tvc-k1": lambda: RNN(num_knobs=1, hidden_size=8, conditioning="tvc", control_block_size=20),
    "lstm": lambda: RNN(hidden_size=16),
    "gru-k2": lambda: RNN(num_knobs=2, hidden_size=12, cell="gru", conditioning="knobs", residual=True),
    # head_scale 1: outputs at full scale, so absolute errors mean something
    "wavenet": lambda: WaveNet(preset="nano", head_scale=1.0),
    "wavenet-gated-k1": lambda: WaveNet(num_knobs=1, head_scale=1.0, layers=[
        {"channels": 6, "head_size": 3, "kernel_size": 3, "dilations": [1, 4, 16], "gated": True},
        {"channels": 3, "head_size": 1, "kernel_size": 2, "dilations": [2, 8], "head_bias": True},
    ]),
    # gray-box: static EQs (block form), a dynamic offset, the SIREN nonlinearity and FIR
    "graybox-dist": lambda: GrayBoxChain(spec="peq.s+g.s+off.d+mlp+g.s+peq.s+fir+lp.s", control_block_size=32),
    # knob-conditioned EQ and gains, a time-varying shelf, the compressor, the rational nonlinearity
    "graybox-k2": lambda: GrayBoxChain(spec="peq.sc+g.sc+off.dc+rnl+hs.d+comp.s+g.sc+lp.s", num_knobs=2,
                                       control_block_size=24),
}


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = FACTORIES[name]().eval()
    if isinstance(net, GrayBoxChain):
        # Controllers away from their initial values, so every filter and gain does something
        # (the pretrained SIREN weights stay as they are).
        with torch.no_grad():
            for stage in net.stages:
                for parameter in stage.controller.parameters() if stage.controller is not None else []:
                    parameter.add_(0.3 * torch.randn_like(parameter))
    if isinstance(net, TCN | GCN) and net.conditioning.method == "film":
        # Non-trivial BatchNorm statistics, so the exported affine map is really checked.
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return net


def knob_names(net: torch.nn.Module) -> list[str]:
    return ["drive", "tone", "level", "mix", "bias"][: net.num_knobs]


def describe(net: torch.nn.Module) -> ExportMetadata:
    """Export metadata as a checkpoint of the built-in data would give it."""
    return ExportMetadata.describe(net, {"sample_rate": SAMPLE_RATE, "knob_names": knob_names(net), "dataset": "synth"})


def save_checkpoint(net: torch.nn.Module, path: Path, val_esr: float | None = 0.0123,
                    dataset: str | None = "synth-overdrive", sample_rate: int | None = SAMPLE_RATE) -> Path:
    """A checkpoint of the shape EffectModule writes (state dict keys prefixed ``net.``); the
    tests that export what ``nablafx fit`` itself wrote are in test_export_fit.py."""
    config = to_config(net)
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"net": config, "lr": 1e-3},
            "nablafx": {
                "version": nablafx.__version__, "net": config, "sample_rate": sample_rate,
                "num_knobs": net.num_knobs, "knob_names": knob_names(net), "dataset": dataset,
                "val_esr": val_esr, "receptive_field": net.receptive_field, "latency": net.latency,
            },
        },
        path,
    )
    return path


def signal(num_samples: int = 3000, seed: int = 1) -> np.ndarray:
    """Band-limited-ish noise with a loud middle, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.standard_normal(num_samples), np.ones(4) / 4, mode="same") * 0.6
    x[num_samples // 3 : 2 * num_samples // 3] *= 2.0
    return np.clip(x, -1, 1).astype(np.float32)


@torch.no_grad()
def torch_output(net: torch.nn.Module, x: np.ndarray, knobs: np.ndarray | None = None, state=None) -> np.ndarray:
    k = torch.from_numpy(knobs).reshape(1, -1) if net.num_knobs else None
    y, _ = net(torch.from_numpy(x).reshape(1, 1, -1), k, state)
    return y.reshape(-1).numpy()


def knob_values(net: torch.nn.Module) -> np.ndarray:
    return np.linspace(0.2, 0.9, net.num_knobs, dtype=np.float32)


def blocks_of(x: np.ndarray, sizes: tuple[int, ...]):
    """Cut ``x`` into consecutive blocks whose sizes cycle through ``sizes``."""
    start, i = 0, 0
    while start < len(x):
        yield x[start : start + sizes[i % len(sizes)]]
        start += sizes[i % len(sizes)]
        i += 1


def export_cli(*argv) -> int:
    """``nablafx export ARGV`` in this process (errors raised, not turned into exit codes)."""
    from nablafx.commands import export as export_command

    parser = argparse.ArgumentParser()
    export_command.add_arguments(parser)
    return export_command.run(parser.parse_args([str(a) for a in argv]))
