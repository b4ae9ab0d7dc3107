"""``nablafx process``: apply a trained checkpoint to a wav file, in one call or streamed in blocks."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from nablafx.core import feed_blocks
from nablafx.runtime import StreamingRuntime
from nablafx.errors import ConfigError, MissingFileError
from nablafx.files import replaced_atomically

NAME = "process"
HELP = "apply a trained model (checkpoint) to a wav file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "examples:\n"
        "  nablafx process logs/nablafx/RUN/checkpoints/last.ckpt dry.wav wet.wav\n"
        "  nablafx process model.ckpt dry.wav wet.wav --knobs 0.3,0.7 --block-size 64"
    )
    parser.add_argument("model", type=Path, help="checkpoint written by `nablafx fit` (.ckpt)")
    parser.add_argument("input", type=Path, help="input wav (mono; several channels are processed independently)")
    parser.add_argument("output", type=Path, help="output wav (32-bit float, at the input's sample rate)")
    parser.add_argument("--knobs", default=None, help="knob values in [0, 1], comma-separated, in the model's knob order")
    parser.add_argument(
        "--block-size", type=int, default=None,
        help="stream the file through the model in blocks of N samples, carrying the state "
        "(as a plugin would); the output equals the one-call output",
    )


def parse_knobs(text: str | None, knob_names: list[str], num_knobs: int) -> torch.Tensor | None:
    """``"0.3,0.7"`` -> tensor (1, 2), checked against the model's knobs."""
    names = ", ".join(knob_names) if knob_names else f"{num_knobs} knob(s)"
    if num_knobs == 0:
        if text:
            raise ConfigError(f"this model takes no knobs, but --knobs {text} was given; drop --knobs")
        return None
    if not text:
        raise ConfigError(f"this model needs --knobs with {num_knobs} value(s) in [0, 1] ({names}), e.g. --knobs {','.join(['0.5'] * num_knobs)}")
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--knobs {text!r}: expected comma-separated numbers such as 0.3,0.7") from None
    if len(values) != num_knobs:
        raise ConfigError(f"--knobs {text}: the model has {num_knobs} knob(s) ({names}), got {len(values)} value(s)")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ConfigError(f"--knobs {text}: values must lie in [0, 1], got {bad}")
    return torch.tensor([values], dtype=torch.float32)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise MissingFileError(f"input file {path} does not exist; give the path of a WAV file")
    try:
        audio, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ConfigError(f"{path} is not a readable audio file ({error})") from None
    if not np.isfinite(audio).all():
        raise ConfigError(f"{path} contains NaN or inf samples; repair or re-export the file")
    return audio.T, sample_rate  # (channels, time)


def write_wav_atomically(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """32-bit float WAV, renamed into place when whole (see :mod:`nablafx.files`)."""
    with replaced_atomically(path) as temporary:
        sf.write(temporary, audio.T, sample_rate, subtype="FLOAT", format="WAV")


def apply_model(net, audio: torch.Tensor, knobs: torch.Tensor | None, block_size: int | None) -> torch.Tensor:
    """Process ``audio`` (channels, time): each channel as one batch item (an independent stream).

    With ``block_size`` the audio goes through :class:`~nablafx.runtime.StreamingRuntime`
    block by block, as a plugin host drives the model (``reset`` / ``process``); the output
    equals the one-call output. Neither path compensates the model's ``latency`` (0 for
    every causal nablafx model), so they stay comparable sample for sample.
    """
    if block_size is None:
        x = audio[:, None, :]
        batch_knobs = knobs.expand(x.shape[0], -1) if knobs is not None else None
        with torch.no_grad():
            y, _ = net(x, batch_knobs)
        return y[:, 0, :]
    runtime = StreamingRuntime(net, None if knobs is None else knobs.reshape(-1))
    return feed_blocks(runtime.process, audio, block_size)


def run(args: argparse.Namespace) -> int:
    from nablafx.training.checkpoint import load_checkpoint

    if args.block_size is not None and args.block_size < 1:
        raise SystemExit(f"--block-size must be >= 1, got {args.block_size}")
    net, meta = load_checkpoint(args.model)
    knobs = parse_knobs(args.knobs, list(meta.get("knob_names") or []), net.num_knobs)
    audio, file_rate = read_wav(args.input)
    model_rate = meta.get("sample_rate") or file_rate
    signal = torch.from_numpy(audio)
    if file_rate != model_rate:
        print(f"resampling {args.input} from {file_rate} Hz to the model's {model_rate} Hz and back")
        signal = torchaudio.functional.resample(signal, file_rate, model_rate)
    start = time.perf_counter()
    output = apply_model(net, signal, knobs, args.block_size)
    elapsed = time.perf_counter() - start
    latency = int(net.latency)
    if file_rate != model_rate:
        output = torchaudio.functional.resample(output, model_rate, file_rate)[..., : audio.shape[-1]]
    write_wav_atomically(args.output, output.numpy(), file_rate)
    seconds = audio.shape[-1] / file_rate
    mode = (f"streamed in blocks of {args.block_size} by StreamingRuntime, latency {latency} samples"
            if args.block_size else "one call")
    print(
        f"wrote {args.output} ({seconds:.2f} s, {audio.shape[0]} channel(s), {mode}, "
        f"{seconds / max(elapsed, 1e-9):.1f}x real time)"
    )
    return 0
