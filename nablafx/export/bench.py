"""Speed of exported artefacts at plugin block sizes, next to PyTorch streaming.

Speed is given as "times real time" (NAM's convention): seconds of audio processed per
second of compute, streaming block by block with the state carried (as a plugin does),
on one thread, timed by :func:`nablafx.benchmark.times_real_time` (the unit and timer
``nablafx bench`` uses for every model). Compute is the CPU time of the calling thread
(every runtime here runs on it with one thread); the wall-time figures are kept too.
``.pt`` (TorchScript), ``.onnx``
(onnxruntime) and ``.nm`` (Neutone SDK wrapper) are run by their Python consumers; the
JSON formats (NAM, RTNeural, AIDA-X, Proteus) have no runtime here -- their speed is the
C++ plugin's.

The PyTorch figure runs the same architecture (rebuilt from the config stored in the
artefact's metadata; the weights do not change the cost) through
:class:`~nablafx.runtime.StreamingRuntime`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nablafx.benchmark import times_real_time
from nablafx.core import from_config
from nablafx.runtime import StreamingRuntime
from nablafx.errors import ConfigError, MissingFileError

BLOCK_SIZES = (32, 64, 128, 256, 512, 1024, 2048)
#: suffix -> format of the artefacts timed here (each has a Python consumer)
RUNNABLE = {".pt": "torchscript", ".onnx": "onnx", ".nm": "neutone"}
#: suffixes nablafx exports whose consumer is a C++ plugin only
PLUGIN_ONLY = {".nam": "NAM", ".json": "RTNeural / AIDA-X / Proteus JSON"}


def check_artefact(path: str | Path) -> Path:
    """``path`` as a :class:`Path` if it is an artefact that can be timed here, else a clear error."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PLUGIN_ONLY:
        raise ConfigError(
            f"{path}: no Python runtime to time for {PLUGIN_ONLY[suffix]} ({suffix}) files; they run in their "
            "C++ plugins -- bench the .pt, .onnx or .nm export of the same model (nablafx export CKPT "
            "--format torchscript|onnx|neutone)"
        )
    if suffix not in RUNNABLE:
        raise ConfigError(
            f"{path}: unknown artefact type {suffix or '(no suffix)'!r}; give a file written by "
            "`nablafx export` with --format torchscript, onnx or neutone (.pt, .onnx or .nm)"
        )
    if not path.is_file():
        raise MissingFileError(
            f"{path}: no such file; write it first with `nablafx export CKPT --format {RUNNABLE[suffix]} "
            f"--out {path}`"
        )
    return path


def _metadata(path: Path, text: str | None) -> dict:
    """The export metadata JSON recorded in an artefact, with the model config (``net``) it needs."""
    try:
        metadata = json.loads(text) if text else None
    except json.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("net"), dict):
        raise ConfigError(
            f"{path}: no nablafx metadata with the model config in this file; bench artefacts written by "
            "`nablafx export` (they record it in nablafx.json / the ONNX metadata properties)"
        )
    return metadata


def _load(path: Path) -> tuple[str, dict, Callable[[np.ndarray], object]]:
    """Format, export metadata and a ``process(block)`` closure of an exported artefact."""
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from nablafx.export.torchscript import METADATA_FILE

        extra = {METADATA_FILE: ""}
        module = torch.jit.load(str(path), _extra_files=extra)
        metadata = _metadata(path, extra[METADATA_FILE])
        knobs = torch.full((len(metadata["knob_names"]),), 0.5)
        return "torchscript", metadata, lambda block: module.process(torch.from_numpy(block), knobs)
    if suffix == ".onnx":
        import onnx

        from nablafx.export.onnx_export import OnnxStreamer

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        metadata = _metadata(path, props.get("nablafx"))
        streamer = OnnxStreamer(path, threads=1)
        knobs = np.full(len(metadata["knob_names"]), 0.5, dtype=np.float32)
        return "onnx", metadata, lambda block: streamer.process(block, knobs)
    if suffix == ".nm":
        from nablafx.export.neutone import MAX_KNOBS, METADATA_FILE

        extra = {METADATA_FILE: ""}
        module = torch.jit.load(str(path), _extra_files=extra)
        metadata = _metadata(path, extra[METADATA_FILE])
        state = {"buffer": None}
        params = None

        def process(block: np.ndarray):
            nonlocal params
            if state["buffer"] != len(block):
                module.set_daw_sample_rate_and_buffer_size(metadata["sample_rate"] or 48_000, len(block))
                state["buffer"] = len(block)
                params = torch.full((MAX_KNOBS, len(block)), 0.5)
            return module.forward(torch.from_numpy(block).unsqueeze(0), params)

        return "neutone", metadata, process
    check_artefact(path)  # raises: not a runnable suffix
    raise AssertionError(f"{path}: suffix {suffix} listed in RUNNABLE but not loaded")


def bench_exported(path: str | Path, block_sizes: tuple[int, ...] = BLOCK_SIZES, seconds: float = 2.0,
                   budget: float = 3.0, repeats: int = 1) -> dict:
    """Times real time of the artefact at ``path`` and of PyTorch streaming, per block size, one thread.

    Each figure is the best of ``repeats`` timings. Returns ``{"path", "format", "family",
    "sample_rate", "block_sizes", "exported": {N: x}, "pytorch": {N: x}, "exported_wall": {N: x},
    "pytorch_wall": {N: x}}`` (x: times real time).
    """
    path = check_artefact(path)
    if not block_sizes or min(block_sizes) < 1:
        raise ConfigError(f"block sizes must be >= 1, got {list(block_sizes)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        try:
            fmt, metadata, _ = _load(path)
        except ValueError:
            raise
        except Exception as error:  # torch.jit / onnx raise several types for corrupt or foreign files
            raise ConfigError(
                f"{path}: not a readable {RUNNABLE[path.suffix.lower()]} artefact ({error}); re-export it with "
                "`nablafx export`"
            ) from error
        rate = metadata.get("sample_rate") or 48_000
        runtime = StreamingRuntime(from_config(metadata["net"]))
        figures = {key: {} for key in ("exported", "pytorch", "exported_wall", "pytorch_wall")}
        for size in block_sizes:
            # A fresh load per block size, as a host with that buffer size would have: TorchScript's
            # executor specialises on the first shapes it sees and runs later ones slower.
            _, _, process = _load(path)
            runtime.reset()
            for key, fn in (("exported", process), ("pytorch", runtime.process)):
                speed = times_real_time(fn, rate, size, seconds, budget, repeats)
                figures[key][size], figures[f"{key}_wall"][size] = speed.cpu, speed.wall
    finally:
        torch.set_num_threads(threads)
    return {"path": str(path), "format": fmt, "family": metadata.get("family"), "sample_rate": rate,
            "block_sizes": list(block_sizes), **figures}


def format_table(results: list[dict]) -> str:
    """A plain-text table: one row per artefact and runtime, one column per block size.

    The ``runtime`` column names the exported artefact's format (torchscript, onnx, neutone)
    for the artefact run by its consumer, ``pytorch stream`` for the same architecture
    streamed in PyTorch through :class:`~nablafx.runtime.StreamingRuntime`.
    """
    sizes = results[0]["block_sizes"]
    width = max(28, *(len(Path(result["path"]).name) for result in results))
    header = f"{'artefact':<{width}} {'runtime':<15}" + "".join(f"{n:>8}" for n in sizes)
    rows = [header, "-" * len(header)]
    for result in results:
        name = Path(result["path"]).name
        for runtime in ("exported", "pytorch"):
            label = result["format"] if runtime == "exported" else "pytorch stream"
            rows.append(f"{name:<{width}} {label:<15}" + "".join(f"{result[runtime][n]:>8.1f}" for n in sizes))
    return "\n".join(rows)
