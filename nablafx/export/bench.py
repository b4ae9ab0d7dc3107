"""Speed of exported artefacts at plugin block sizes, next to PyTorch streaming.

Speed is given as "times real time" (NAM's convention): seconds of audio processed per
second of compute, streaming block by block with the state carried (as a plugin does),
on one thread. 10x means the model uses a tenth of one core in real time. Compute is the
CPU time of the calling thread (every runtime here runs on it with one thread), which on
a shared machine is steadier than wall time; the wall-time figures are kept too. (``nablafx
bench`` reports the inverse, compute time / audio time, as its ``rtf_*``.) ``.pt`` (TorchScript), ``.onnx``
(onnxruntime) and ``.nm`` (Neutone SDK wrapper) are run by their Python consumers; the
JSON formats (NAM, RTNeural, AIDA-X, Proteus) have no runtime here -- their speed is the
C++ plugin's.

The PyTorch figure runs the same architecture (rebuilt from the config stored in the
artefact's metadata; the weights do not change the cost) through
:class:`~nablafx.export.runtime.StreamingRuntime`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nablafx.core import from_config
from nablafx.export.runtime import StreamingRuntime

BLOCK_SIZES = (32, 64, 128, 256, 512, 1024, 2048)


def times_real_time(process: Callable[[np.ndarray], object], sample_rate: int, block_size: int,
                    seconds: float = 2.0, budget: float = 3.0, warm_up: int = 3) -> tuple[float, float]:
    """Stream noise in blocks of ``block_size`` through ``process`` for up to ``seconds`` of
    audio or ``budget`` seconds of wall time, whichever ends first; returns audio time over
    (thread CPU time, wall time)."""
    rng = np.random.default_rng(0)
    total = max(int(seconds * sample_rate) // block_size, 1)
    blocks = (0.3 * rng.standard_normal((total + warm_up, block_size))).astype(np.float32)
    for block in blocks[:warm_up]:
        process(block)
    done, start, start_cpu = 0, time.perf_counter(), time.thread_time()
    for block in blocks[warm_up:]:
        process(block)
        done += 1
        if time.perf_counter() - start > budget:
            break
    audio = done * block_size / sample_rate
    return audio / (time.thread_time() - start_cpu), audio / (time.perf_counter() - start)


def _load(path: Path) -> tuple[str, dict, Callable[[np.ndarray], object]]:
    """Format, export metadata and a ``process(block)`` closure of an exported artefact."""
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from nablafx.export.torchscript import METADATA_FILE

        extra = {METADATA_FILE: ""}
        module = torch.jit.load(str(path), _extra_files=extra)
        metadata = json.loads(extra[METADATA_FILE])
        knobs = torch.full((metadata["net"]["init_args"].get("num_knobs", 0),), 0.5)
        return "torchscript", metadata, lambda block: module.process(torch.from_numpy(block), knobs)
    if suffix == ".onnx":
        import onnx

        from nablafx.export.onnx_export import OnnxStreamer

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        metadata = json.loads(props["nablafx"])
        streamer = OnnxStreamer(path, threads=1)
        knobs = np.full(len(metadata["knob_names"]), 0.5, dtype=np.float32)
        return "onnx", metadata, lambda block: streamer.process(block, knobs)
    if suffix == ".nm":
        from nablafx.export.neutone import MAX_KNOBS, METADATA_FILE

        extra = {METADATA_FILE: ""}
        module = torch.jit.load(str(path), _extra_files=extra)
        metadata = json.loads(extra[METADATA_FILE])
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
    raise ValueError(
        f"{path}: no Python runtime to time for {suffix or 'this'} files; .nam/RTNeural/AIDA-X/Proteus "
        "JSON run in their C++ plugins (bench the .pt, .onnx or .nm export of the same model)"
    )


def bench_exported(path: str | Path, block_sizes: tuple[int, ...] = BLOCK_SIZES, seconds: float = 2.0,
                   budget: float = 3.0) -> dict:
    """Times real time of the artefact at ``path`` and of PyTorch streaming, per block size, one thread.

    Returns ``{"path", "format", "family", "sample_rate", "block_sizes", "exported": {N: x},
    "pytorch": {N: x}, "exported_wall": {N: x}, "pytorch_wall": {N: x}}`` (x: times real time).
    """
    path = Path(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fmt, metadata, _ = _load(path)
        rate = metadata.get("sample_rate") or 48_000
        runtime = StreamingRuntime(from_config(metadata["net"]))
        figures = {key: {} for key in ("exported", "pytorch", "exported_wall", "pytorch_wall")}
        for size in block_sizes:
            # A fresh load per block size, as a host with that buffer size would have: TorchScript's
            # executor specialises on the first shapes it sees and runs later ones slower.
            _, _, process = _load(path)
            figures["exported"][size], figures["exported_wall"][size] = times_real_time(
                process, rate, size, seconds, budget)
            figures["pytorch"][size], figures["pytorch_wall"][size] = times_real_time(
                runtime.process, rate, size, seconds, budget)
    finally:
        torch.set_num_threads(threads)
    return {"path": str(path), "format": fmt, "family": metadata["family"], "sample_rate": rate,
            "block_sizes": list(block_sizes), **figures}


def format_table(results: list[dict]) -> str:
    """A plain-text table: one row per artefact and runtime, one column per block size."""
    sizes = results[0]["block_sizes"]
    header = f"{'model':<28} {'runtime':<12}" + "".join(f"{n:>8}" for n in sizes)
    rows = [header, "-" * len(header)]
    for result in results:
        name = Path(result["path"]).stem
        for runtime in ("exported", "pytorch"):
            label = result["format"] if runtime == "exported" else "pytorch"
            rows.append(f"{name:<28} {label:<12}" + "".join(f"{result[runtime][n]:>8.1f}" for n in sizes))
    return "\n".join(rows)
