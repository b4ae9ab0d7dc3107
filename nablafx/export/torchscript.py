"""TorchScript export: one ``.pt`` file a libtorch host (or ``torch.jit.load``) can stream with.

Layout of the saved module (a scripted :class:`StatefulStreamer`):

- ``step`` -- the traced streaming step with explicit state (see
  :mod:`nablafx.export.streaming`): ``out, *state = m.step(block, knobs, *state)``
  (call it without autograd -- ``torch.no_grad()`` / ``torch::NoGradGuard`` -- or it runs
  many times slower),
  ``block`` ``(1, 1, L)`` for any ``L``, ``knobs`` ``(1, num_knobs)`` (``(1, 0)`` without
  knobs); the zero initial state is ``m.initial_state()``;
- ``process(block, knobs=None)`` -- the same with the state kept inside the module;
  ``block`` ``(L,)`` or ``(1, 1, L)``; ``knobs`` ``(num_knobs,)`` or ``(1, num_knobs)``,
  None for the defaults (0.5 each); ``forward`` is ``process``. Buffers longer than
  ``max_piece`` samples are run in pieces of that length (chosen at export as the
  cheapest per sample, see :func:`~nablafx.export.streaming.fastest_piece`);
- ``reset()`` -- back to silence;
- attributes ``latency`` (samples), ``sample_rate`` (Hz, 0 if unknown), ``num_knobs``,
  ``knob_names`` and ``metadata`` (JSON of :class:`~nablafx.export.metadata.ExportMetadata`),
  which is also stored as the extra file ``nablafx.json``.

The wrapper is scripted (``torch.jit.script``); the model inside is traced, because the
models themselves are not written in TorchScript's subset (see
:mod:`nablafx.export.streaming`). TorchScript's profiling executor optimises for the first
block lengths it sees; a host that changes its buffer size often may prefer
``torch._C._jit_set_profiling_executor(False)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch import Tensor, nn

from nablafx.core import feed_blocks
from nablafx.export.check import IRREGULAR_BLOCKS, max_error, reference_output
from nablafx.export.metadata import ExportMetadata
from nablafx.export.streaming import fastest_piece, trace_step

METADATA_FILE = "nablafx.json"


class StatefulStreamer(nn.Module):
    """Scripted host-facing wrapper: the traced step plus its state (see module docstring)."""

    def __init__(self, step: torch.jit.ScriptModule, state: list[Tensor], metadata: ExportMetadata,
                 max_piece: int):
        super().__init__()
        self.step = step
        self.max_piece: int = max_piece
        # Tuples (not lists) so TorchScript knows their length and can unpack them into ``step``.
        self.initial = tuple(state)
        self.state = tuple(s.clone() for s in state)
        self.num_knobs: int = metadata.num_knobs
        self.latency: int = metadata.latency
        self.sample_rate: int = metadata.sample_rate or 0
        self.knob_names: List[str] = list(metadata.knob_names)
        self.metadata: str = json.dumps(metadata.to_dict())
        self.default_knobs = torch.full((1, metadata.num_knobs), 0.5)

    def forward(self, block: Tensor, knobs: Optional[Tensor] = None) -> Tensor:
        return self.process(block, knobs)

    @torch.jit.export
    def process(self, block: Tensor, knobs: Optional[Tensor] = None) -> Tensor:
        flat = block.dim() == 1
        x = block.reshape(1, 1, -1)
        k = self.default_knobs if knobs is None else knobs.reshape(1, self.num_knobs)
        pieces: List[Tensor] = []
        # Without autograd whatever the caller's mode: in grad mode the executor builds
        # differentiable subgraphs and a call costs up to 100x more.
        with torch.no_grad():
            for start in range(0, x.shape[-1], self.max_piece):
                out = self.step(x[:, :, start : start + self.max_piece], k, *self.state)
                self.state = out[1:]
                pieces.append(out[0])
        y = torch.cat(pieces, dim=-1) if len(pieces) != 1 else pieces[0]
        return y.reshape(-1) if flat else y

    @torch.jit.export
    def reset(self) -> None:
        self.state = self.initial

    @torch.jit.export
    def initial_state(self) -> List[Tensor]:
        return [s for s in self.initial]


def check(net: nn.Module, metadata: ExportMetadata) -> None:
    """Every nablafx model traces (see :mod:`nablafx.export.streaming`)."""


def streamer(net: nn.Module, metadata: ExportMetadata) -> StatefulStreamer:
    """``net``'s traced streaming step in a :class:`StatefulStreamer` (not yet scripted)."""
    step, state, _ = trace_step(net, freeze=True)
    return StatefulStreamer(step, state, metadata, fastest_piece(step, state, net.num_knobs))


def write(net: nn.Module, metadata: ExportMetadata, path: Path) -> None:
    module = torch.jit.script(streamer(net, metadata))
    torch.jit.save(module, str(path), _extra_files={METADATA_FILE: json.dumps(metadata.to_dict(), indent=2)})


def load(path: str | Path) -> torch.jit.ScriptModule:
    return torch.jit.load(str(path), map_location="cpu")


@torch.no_grad()
def verify(path: Path, net: nn.Module, x: np.ndarray, knobs: np.ndarray,
           blocks: tuple[int, ...] = IRREGULAR_BLOCKS) -> dict[str, float]:
    """Load with ``torch.jit.load``; stream in one call, in ``blocks`` (cycled, ``process``) and
    in blocks of 64 through the explicit-state ``step``; errors against the PyTorch model."""
    module = load(path)
    reference = reference_output(net, x, knobs)
    k = torch.from_numpy(knobs)

    def process(block: np.ndarray) -> np.ndarray:
        return module.process(torch.from_numpy(block), k).numpy()

    errors = {}
    module.reset()
    errors["one call"] = max_error(process(x), reference)
    module.reset()
    errors[f"blocks {blocks}"] = max_error(feed_blocks(process, x, blocks), reference)
    state = module.initial_state()

    def step(block: np.ndarray) -> np.ndarray:
        nonlocal state
        y, *state = module.step(torch.from_numpy(block).reshape(1, 1, -1), k.reshape(1, -1), *state)
        return y.reshape(-1).numpy()

    errors["step, blocks of 64"] = max_error(feed_blocks(step, x, 64), reference)
    return errors
