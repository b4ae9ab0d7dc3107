"""``nablafx bench``: what a model costs -- parameters, receptive field, MACs, speed.

For each model (a model config YAML such as ``cfg/model/tcn/tcn-45-s-16.yaml``, a folder
of them, or a checkpoint) it reports:

- ``params``: trainable parameters;
- ``receptive_field``: input samples one output depends on (0 = unbounded: recurrent or
  signal-adaptive models); ``conv_receptive_field`` for the convolution path when different;
- ``macs_per_sample``: multiply-accumulates per output sample, counted by forward hooks on
  Conv1d / Linear / LSTM / GRU / DiagonalSSM while streaming (block-rate layers count at their
  own rate; the SSM counts its recurrent form, 8 real MACs per complex state + 1);
- ``train_audio_seconds_per_second``: seconds of audio per second of forward + backward
  (L1 loss) at ``--batch`` x ``--seconds`` (default 16 x 3 s, the papers' setting) with
  ``--threads`` CPU threads; honours ``tbptt_chunk`` from the config (chunked, detached);
- ``x_real_time_offline``: audio seconds per CPU second (higher is faster; RTF = 1 / x) of
  one call on ``--infer-seconds`` of audio, batch 1, ONE thread;
- ``x_real_time_stream``: the same when fed host blocks of 32 .. 4096 samples through
  :class:`nablafx.runtime.StreamingRuntime` with the carried state, one thread -- what a
  plugin pays. ``stream_overhead_64`` = x_real_time_offline / x_real_time_stream[64].

Every timing comes from :mod:`nablafx.benchmark` (one timer, one test signal, one unit).

``--quick`` reports only params / receptive field / MACs and is fast over every config.
Timings are the best of ``--repeats`` runs; on a shared machine they are noisy.

``--stream-memory`` streams one model (``--hours``, default 1, or ``--minutes`` of audio) in
``--block-size`` (64) sample blocks through :class:`nablafx.runtime.StreamingRuntime`, one thread,
and samples the process's resident memory (``/proc/self/statm``; peak RSS from
``resource.getrusage`` where there is no ``/proc``) every ``--every-minutes`` of audio: a table
of audio time vs RSS and its growth, which must stay flat for a plugin that runs for hours.

``--exported PATH [PATH ...]`` times exported artefacts instead (``.pt`` TorchScript, ``.onnx``,
``.nm`` Neutone; see :mod:`nablafx.export.bench`): per host block size (default 32 .. 2048), one
thread, the artefact run by its Python consumer next to PyTorch streaming of the same
architecture (rebuilt from the model config every artefact records; the weights do not change
the cost), in times real time (audio seconds per CPU second; RTF = 1 / that).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml
from torch import nn

from nablafx import benchmark
from nablafx.benchmark import example_signal, mid_knobs
from nablafx.core import detach_state, from_config
from nablafx.errors import ConfigError

NAME = "bench"
HELP = "measure params, receptive field, MACs/sample, training throughput and speed (x real time) of models"
SAMPLE_RATE = 48_000
DEFAULT_BLOCK_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


EPILOG = """\
Speeds are x real time = audio seconds per CPU second (higher is faster; RTF = 1 / x);
inference timings use one CPU thread, as a plugin's audio thread would. MACs count Conv1d/Linear/LSTM/GRU/SSM layers
only (not DSP processors of gray-box chains).

With --exported, each artefact written by `nablafx export` (.pt, .onnx, .nm) is streamed by
its consumer (torch.jit / onnxruntime / neutone-sdk) at each block size, one thread, next to
PyTorch streaming of the same architecture (rebuilt from the config recorded in the
artefact) through nablafx.runtime.StreamingRuntime; figures are x real time (audio seconds
per CPU second, higher is faster; RTF = 1 / x). --quick then times 0.25 s per block size.

With --stream-memory, one model streams --hours (or --minutes) of noise in --block-size blocks
through nablafx.runtime.StreamingRuntime, one thread; resident memory (RSS) is sampled every
--every-minutes of audio and printed against audio time with its growth; --quick streams 1
minute, sampled every 10 s.

examples:
  nablafx bench cfg/model/tcn/tcn-45-s-16.yaml
  nablafx bench --stream-memory cfg/model/rnn/lstm-32.yaml --hours 1 --every-minutes 5
  nablafx bench --quick cfg/model            # params / receptive field / MACs of every config
  nablafx bench --json --batch 4 --seconds 1 logs/proj/run/checkpoints/last.ckpt
  nablafx bench --exported model.pt model.onnx --block-sizes 64 512
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("models", nargs="*", help="model config YAML(s), folders of them, or checkpoint(s)")
    parser.add_argument("--exported", nargs="+", default=None, metavar="PATH",
                        help="time exported artefacts (.pt, .onnx, .nm from `nablafx export`) against "
                        "PyTorch streaming, instead of MODELS")
    parser.add_argument("--quick", action="store_true",
                        help="only params, receptive field and MACs (fast); with --exported: 0.25 s of "
                        "audio per block size, one run")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model")
    parser.add_argument("--batch", type=int, default=16, help="training batch size (default 16)")
    parser.add_argument("--seconds", type=float, default=3.0, help="training segment length in s (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for training (default: torch's)")
    parser.add_argument("--infer-seconds", type=float, default=10.0, help="audio for the offline speed (default 10)")
    parser.add_argument("--stream-seconds", type=float, default=2.0, help="audio per streaming block size (default 2)")
    parser.add_argument("--block-sizes", type=int, nargs="+", default=None,
                        help="host block sizes for the streaming speed (default 32 .. 4096; with --exported "
                        "32 .. 2048)")
    parser.add_argument("--repeats", type=int, default=2, help="timing runs, best kept (default 2)")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, help="for the speeds (default 48000)")
    memory = parser.add_argument_group("memory while streaming (--stream-memory)")
    memory.add_argument("--stream-memory", action="store_true",
                        help="stream hours of audio block by block and print resident memory against audio time")
    memory.add_argument("--hours", type=float, default=1.0, help="audio to stream (default 1)")
    memory.add_argument("--minutes", type=float, default=None, help="audio to stream, instead of --hours")
    memory.add_argument("--every-minutes", type=float, default=None,
                        help="sample memory every this many minutes of audio (default: 12 samples per run)")
    memory.add_argument("--block-size", type=int, default=64, help="host block size in samples (default 64)")


# --- loading ------------------------------------------------------------------------------------------


def expand_paths(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        found.extend(sorted(p.rglob("*.yaml")) if p.is_dir() else [p])
    return found


def load_model(path: Path) -> tuple[nn.Module, dict]:
    """The net and its training options (e.g. ``tbptt_chunk``) from a config YAML or a checkpoint."""
    if path.suffix in (".yaml", ".yml"):
        document = yaml.safe_load(path.read_text()) or {}
        module_args = document.get("model", document)
        net_config = module_args.get("net", module_args)
        if not isinstance(net_config, dict) or "class_path" not in net_config:
            raise ConfigError(f"{path}: no model.net class_path/init_args found")
        return from_config(net_config), {k: v for k, v in module_args.items() if k != "net"}
    from nablafx.training.checkpoint import load_checkpoint  # local: YAML benchmarks need no training stack

    model, _ = load_checkpoint(path)
    hparams = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    return model, {k: v for k, v in hparams.items() if k != "net"}


def model_knobs(model: nn.Module, batch: int) -> torch.Tensor | None:
    return mid_knobs(getattr(model, "num_knobs", 0), batch)


# --- static measures ------------------------------------------------------------------------------------


def count_macs(model: nn.Module, block: int = 2048) -> float:
    """MACs per output sample, counted by hooks while streaming a warmed-up block."""
    from nablafx.models.s4 import DiagonalSSM  # local: bench must not fail for models without S4

    total = 0.0

    def hook(module, inputs, output):
        nonlocal total
        x = inputs[0]
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(module, nn.Conv1d):
            total += out.numel() * module.in_channels // module.groups * module.kernel_size[0]
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features
        elif isinstance(module, (nn.LSTM, nn.GRU)):
            gates = 4 if isinstance(module, nn.LSTM) else 3
            steps = x.numel() // x.shape[-1]  # batch * time
            total += steps * gates * module.hidden_size * (module.input_size + module.hidden_size)
        elif isinstance(module, DiagonalSSM):
            total += x.numel() * (8 * module.state_size + 1)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv1d, nn.Linear, nn.LSTM, nn.GRU, DiagonalSSM))
    ]
    model.eval()
    knobs = model_knobs(model, 1)
    x = example_signal(1, 2 * block)
    with torch.no_grad():
        _, state = model(x[..., :block], knobs)
        total = 0.0  # count the second block only: steady-state control steps
        model(x[..., block:], knobs, state)
    for h in handles:
        h.remove()
    return total / block


def static_report(model: nn.Module) -> dict:
    report = {
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "receptive_field": int(getattr(model, "receptive_field", 0)),
        "macs_per_sample": round(count_macs(model)),
    }
    conv_rf = getattr(model, "conv_receptive_field", None)
    if conv_rf is not None and conv_rf != report["receptive_field"]:
        report["conv_receptive_field"] = int(conv_rf)
    return report


# --- timings --------------------------------------------------------------------------------------------


def training_throughput(model: nn.Module, options: dict, args) -> float:
    """Seconds of audio per second of forward + backward (L1 loss), TBPTT if configured."""
    length = int(args.seconds * args.sample_rate)
    x = example_signal(args.batch, length)
    knobs = model_knobs(model, args.batch)
    chunk = options.get("tbptt_chunk") or length
    model.train()

    def step():
        state = None
        for start in range(0, length, chunk):
            piece = x[..., start : start + chunk]
            y, state = model(piece, knobs, state)
            (y - piece).abs().mean().backward()
            state = detach_state(state)
        model.zero_grad(set_to_none=True)

    model(x[:1, :, : min(length, 4096)], model_knobs(model, 1))  # warm-up (allocations, lazy init)
    return args.batch * args.seconds / benchmark.best_time(step, args.repeats).wall  # several threads: wall


@torch.no_grad()
def offline_speed(model: nn.Module, args) -> float:
    """x real time of one call on ``--infer-seconds`` of audio (thread CPU time)."""
    length = int(args.infer_seconds * args.sample_rate)
    x, knobs = example_signal(1, length), model_knobs(model, 1)
    model.eval()
    model(x[..., :4096], knobs)
    return args.infer_seconds / benchmark.best_time(lambda: model(x, knobs), args.repeats).cpu


def stream_speed(model: nn.Module, block_size: int, args) -> float:
    """x real time streaming ``--stream-seconds`` in ``block_size`` blocks (thread CPU time)."""
    from nablafx.runtime import StreamingRuntime

    runtime = StreamingRuntime(model)
    return benchmark.times_real_time(runtime.process, args.sample_rate, block_size, args.stream_seconds,
                                     budget=float("inf"), repeats=args.repeats).cpu


def full_report(model: nn.Module, options: dict, args) -> dict:
    report = static_report(model)
    threads = torch.get_num_threads()
    train_threads = args.threads or threads
    try:
        torch.set_num_threads(train_threads)
        report["train_audio_seconds_per_second"] = round(training_throughput(model, options, args), 3)
        report["train_threads"] = train_threads
        report["train_batch"] = [args.batch, args.seconds]
        torch.set_num_threads(1)  # what a plugin thread gets
        report["inference_threads"] = 1
        report["x_real_time_offline"] = round(offline_speed(model, args), 3)
        report["x_real_time_stream"] = {str(b): round(stream_speed(model, b, args), 3) for b in args.block_sizes}
        if "64" in report["x_real_time_stream"]:
            report["stream_overhead_64"] = round(
                report["x_real_time_offline"] / report["x_real_time_stream"]["64"], 2
            )
    finally:
        torch.set_num_threads(threads)
    return report


# --- memory while streaming -------------------------------------------------------------------------------

MIB = 1 << 20


def resident_bytes() -> int:
    """Resident set size of this process now (``/proc/self/statm``), or its peak where there is no /proc."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def stream_memory(model: nn.Module, seconds: float, every_seconds: float, block_size: int,
                  sample_rate: int = SAMPLE_RATE, on_sample=None) -> dict:
    """Stream ``seconds`` of noise through ``StreamingRuntime(model)`` in ``block_size`` blocks.

    Memory is sampled after the first block and then every ``every_seconds`` of audio (and at
    the end): ``{"audio_seconds", "blocks", "wall_seconds", "rss_bytes", "py_objects"}`` per
    sample (``wall_seconds``: streaming time so far, without the time spent sampling), each also
    handed to ``on_sample`` as it is taken (progress of a long run). The input cycles through one second of noise, so the loop itself allocates nothing
    that lives longer than a block.
    """
    from nablafx.runtime import StreamingRuntime

    if block_size < 1:
        raise ConfigError(f"--block-size must be >= 1, got {block_size}")
    if seconds <= 0 or every_seconds <= 0:
        raise ConfigError(f"--hours/--minutes and --every-minutes must be > 0, got {seconds} s every {every_seconds} s")
    total_blocks = max(1, round(seconds * sample_rate / block_size))
    every_blocks = max(1, round(every_seconds * sample_rate / block_size))
    period = max(1, sample_rate // block_size) * block_size  # ~1 s of distinct input, whole blocks
    noise = example_signal(1, period + block_size)[0, 0]
    runtime = StreamingRuntime(model)
    samples = []
    sampling = 0.0  # wall time spent sampling, left out of the streaming time

    def sample(blocks: int, start: float) -> None:
        nonlocal sampling
        begin = time.perf_counter()
        gc.collect()  # count what is still referenced, not garbage awaiting collection
        samples.append({"audio_seconds": blocks * block_size / sample_rate, "blocks": blocks,
                        "wall_seconds": begin - start - sampling, "rss_bytes": resident_bytes(),
                        "py_objects": len(gc.get_objects()) + gc.get_freeze_count()})
        if on_sample is not None:
            on_sample(samples[-1])
        gc.freeze()  # what exists now is counted, no longer scanned: later collections see new objects only
        sampling += time.perf_counter() - begin

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a plugin's audio thread
    try:
        start = time.perf_counter()
        offset = 0
        for block in range(1, total_blocks + 1):
            runtime.process(noise[offset : offset + block_size])
            offset = (offset + block_size) % period
            if block == 1 or block % every_blocks == 0 or block == total_blocks:
                sample(block, start)
    finally:
        torch.set_num_threads(threads)
        gc.unfreeze()
    first, last = samples[0], samples[-1]
    warm = samples[1] if len(samples) > 2 else first  # after the first interval: caches and pools are warm
    hours = max(last["audio_seconds"] - warm["audio_seconds"], 1e-9) / 3600
    return {
        "block_size": block_size, "sample_rate": sample_rate, "samples": samples,
        "growth_mib": (last["rss_bytes"] - first["rss_bytes"]) / MIB,
        "growth_after_first_interval_mib": (last["rss_bytes"] - warm["rss_bytes"]) / MIB,
        "growth_mib_per_hour": (last["rss_bytes"] - warm["rss_bytes"]) / MIB / hours,
        "py_objects_growth": last["py_objects"] - warm["py_objects"],
    }


def clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes // 60)}:{int(minutes % 60):02d}:{rest:04.1f}"


def memory_header(name: str, block_size: int, sample_rate: int) -> str:
    return (
        f"{name}: {block_size}-sample blocks at {sample_rate} Hz through StreamingRuntime, 1 thread\n"
        f"{'audio time':>12} {'blocks':>10} {'wall s':>9} {'x real time':>11} {'RSS MiB':>9} {'growth MiB':>10} "
        f"{'py objects':>10}"
    )


def memory_row(row: dict, first: dict) -> str:
    speed = row["audio_seconds"] / row["wall_seconds"] if row["wall_seconds"] > 0 else float("nan")
    return (
        f"{clock(row['audio_seconds']):>12} {row['blocks']:>10} {row['wall_seconds']:>9.1f} {speed:>11.1f} "
        f"{row['rss_bytes'] / MIB:>9.1f} {(row['rss_bytes'] - first['rss_bytes']) / MIB:>+10.1f} {row['py_objects']:>10}"
    )


def memory_summary(result: dict) -> str:
    return (
        f"growth: {result['growth_mib']:+.1f} MiB over {clock(result['samples'][-1]['audio_seconds'])} of audio; "
        f"{result['growth_after_first_interval_mib']:+.1f} MiB after the first interval "
        f"({result['growth_mib_per_hour']:+.2f} MiB per hour of audio, "
        f"{result['py_objects_growth']:+d} Python objects)"
    )


def run_stream_memory(args: argparse.Namespace, paths: list[Path]) -> int:
    seconds = 60.0 if args.quick else (60 * args.minutes if args.minutes is not None else 3600 * args.hours)
    every = 10.0 if args.quick else (60 * args.every_minutes if args.every_minutes is not None else seconds / 12)
    for path in paths:
        torch.manual_seed(0)
        model, _ = load_model(path)
        rows = []

        def print_row(row: dict) -> None:  # the table grows while a long run goes on
            rows.append(row)
            print(memory_row(row, rows[0]), flush=True)

        if not args.json:
            print(memory_header(str(path), args.block_size, args.sample_rate), flush=True)
        result = stream_memory(model, seconds, every, args.block_size, args.sample_rate,
                               on_sample=None if args.json else print_row)
        print(json.dumps({"model": str(path), **result}) if args.json else memory_summary(result))
        sys.stdout.flush()
    return 0


# --- output ---------------------------------------------------------------------------------------------


def format_report(name: str, report: dict) -> str:
    rf = report["receptive_field"]
    rf_text = f"{rf} samples ({1000 * rf / SAMPLE_RATE:.1f} ms)" if rf else "unbounded (recurrent)"
    if "conv_receptive_field" in report:
        rf_text += f"; conv path {report['conv_receptive_field']}"
    lines = [
        name,
        f"  params                 {report['params']:,}",
        f"  receptive field        {rf_text}",
        f"  MACs per sample        {report['macs_per_sample']:,}",
    ]
    if "train_audio_seconds_per_second" in report:
        batch, seconds = report["train_batch"]
        lines += [
            f"  training               {report['train_audio_seconds_per_second']:.2f} s of audio / s "
            f"(fwd+bwd, batch {batch} x {seconds:g} s, {report['train_threads']} threads)",
            f"  offline (1 thread)     {report['x_real_time_offline']:.1f}x real time "
            f"(RTF {1 / report['x_real_time_offline']:.4f})",
            "  streaming (1 thread; block size: x real time, RTF)",
        ]
        for block, speed in report["x_real_time_stream"].items():
            lines.append(f"    {int(block):>5}  {speed:8.1f}x  {1 / speed:.4f}")
        if "stream_overhead_64" in report:
            lines.append(f"  64-sample streaming costs {report['stream_overhead_64']:.2f}x offline per sample")
    return "\n".join(lines)


EXPORTED_LEGEND = """\
speed of exported artefacts, one thread, x real time (audio seconds per CPU second; higher is
faster; RTF = 1 / x), per host block size (columns):
  runtime torchscript / onnx / neutone: the artefact itself, streamed by its consumer
    (torch.jit.load / onnxruntime / neutone-sdk), loaded afresh for each block size
  runtime pytorch stream: PyTorch streaming of the same architecture, rebuilt from the model
    config recorded in the artefact (weights do not change the cost), through
    nablafx.runtime.StreamingRuntime"""


def run_exported(args: argparse.Namespace) -> int:
    from nablafx.export.bench import BLOCK_SIZES, bench_exported, check_artefact, format_table

    if args.models:
        raise ConfigError(
            f"give either model configs ({' '.join(args.models)}) or --exported artefacts, not both; "
            "run `nablafx bench` once for each"
        )
    paths = [check_artefact(path) for path in args.exported]  # every path checked before any timing
    block_sizes = tuple(args.block_sizes or BLOCK_SIZES)
    if min(block_sizes) < 1:
        raise ConfigError(f"--block-sizes must be >= 1, got {list(block_sizes)}")
    seconds, repeats = (0.25, 1) if args.quick else (args.stream_seconds, args.repeats)
    budget = max(1.5 * seconds, 0.5)  # wall-time cap per timing, for slow models on a loaded machine
    results = []
    for path in paths:
        result = bench_exported(path, block_sizes, seconds=seconds, budget=budget, repeats=repeats)
        results.append(result)
        if args.json:
            sizes = result["block_sizes"]
            print(json.dumps({
                "model": result["path"], "format": result["format"], "family": result["family"],
                "sample_rate": result["sample_rate"], "inference_threads": 1, "block_sizes": sizes,
                "x_real_time": {runtime: {str(n): round(result[runtime][n], 3) for n in sizes}
                                for runtime in ("exported", "pytorch")},
                "rtf": {runtime: {str(n): round(1 / result[runtime][n], 6) for n in sizes}
                        for runtime in ("exported", "pytorch")},
                "x_real_time_wall": {runtime: {str(n): round(result[f"{runtime}_wall"][n], 3) for n in sizes}
                                     for runtime in ("exported", "pytorch")},
            }))
            sys.stdout.flush()
    if not args.json:
        print(EXPORTED_LEGEND)
        print()
        print(format_table(results))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.exported is not None:
        return run_exported(args)
    if not args.models:
        raise ConfigError("give model config YAML(s), folders of them or checkpoint(s), or --exported PATH ...")
    args.block_sizes = args.block_sizes or list(DEFAULT_BLOCK_SIZES)
    paths = expand_paths(args.models)
    if not paths:
        print("bench: no model configs found", file=sys.stderr)
        return 2
    if args.stream_memory:
        return run_stream_memory(args, paths)
    if args.quick and not args.json:
        print(f"{'model':<28} {'params':>9} {'rf':>8} {'MACs/sample':>12}")
    status = 0
    for path in paths:
        threads = torch.get_num_threads()
        try:
            torch.manual_seed(0)
            model, options = load_model(path)
            if args.quick:
                torch.set_num_threads(1)  # small forward passes: one thread is fastest
                report = static_report(model)
            else:
                report = full_report(model, options, args)
        except Exception as error:  # report and go on with the other models
            print(f"bench: {path}: {error}", file=sys.stderr)
            status = 1
            continue
        finally:
            torch.set_num_threads(threads)
        if args.json:
            print(json.dumps({"model": str(path), **report}))
        elif args.quick:
            rf = report["receptive_field"] or "inf"
            print(f"{path.stem:<28} {report['params']:>9,} {rf:>8} {report['macs_per_sample']:>12,}")
        else:
            print(format_report(str(path), report))
        sys.stdout.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"nablafx {NAME}", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
