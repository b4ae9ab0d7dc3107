"""Reading audio files into tensors, with errors that say what is wrong and how to fix it.

:func:`load_audio` is what datasets use: mono, finite, not silent, at the model's sample
rate. The smaller helpers (:func:`read_audio`, :func:`first_nonfinite_index`, ...) are
shared with the data checks, which report problems instead of raising on the first one.
Nothing is cached here; datasets preload what they need.
"""

from __future__ import annotations

import warnings
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from nablafx.data.errors import DataError

# Below this every sample of a file counts as silence: -120 dBFS, under the noise floor
# of any 24-bit recording, so a file this quiet was exported or recorded wrongly.
SILENCE_THRESHOLD = 1e-6

MONO_FIX = (
    "downmix to mono or pick one channel, e.g. `sox in.wav out.wav remix -` (mix all channels) "
    "or `sox in.wav out.wav remix 1` (keep the first channel)"
)


def read_audio(path: str | PathLike) -> tuple[np.ndarray, int]:
    """Read every channel of an audio file as float32 ``(channels, time)`` and its sample rate.

    Raises :class:`DataError` when the file is missing or is not audio soundfile can read.
    """
    path = _existing_file(path)
    try:
        samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, TypeError) as error:
        raise _unreadable(path, error) from error
    return np.ascontiguousarray(samples.T), int(sample_rate)


def audio_sample_rate(path: str | PathLike) -> int:
    """Sample rate of an audio file, read from its header only."""
    path = _existing_file(path)
    try:
        return int(soundfile.info(path).samplerate)
    except (soundfile.SoundFileError, RuntimeError, TypeError) as error:
        raise _unreadable(path, error) from error


def _existing_file(path: str | PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        problem = "is a folder, not an audio file" if path.is_dir() else "file not found"
        raise DataError(problem, path, "check the path (relative paths start at the current folder)")
    return path


def _unreadable(path: Path, error: Exception) -> DataError:
    return DataError(
        f"not a readable audio file ({error})",
        path,
        "re-export it as WAV (or another format libsndfile reads: FLAC, AIFF, OGG)",
    )


def first_nonfinite_index(samples: np.ndarray) -> int | None:
    """Time index of the first NaN or infinite sample of ``(channels, time)`` audio, or None."""
    bad_times = np.flatnonzero(~np.isfinite(samples).all(axis=0))
    return int(bad_times[0]) if bad_times.size else None


def is_silent(samples: np.ndarray) -> bool:
    """True when every sample is below :data:`SILENCE_THRESHOLD` in magnitude."""
    return samples.size == 0 or float(np.max(np.abs(samples))) < SILENCE_THRESHOLD


def check_samples(samples: np.ndarray, sample_rate: int, path: str | PathLike) -> None:
    """Raise :class:`DataError` for audio a model cannot learn from: empty, NaN/inf, silent."""
    if samples.shape[-1] == 0:
        raise DataError("contains no samples", path, "re-export the file; it is empty")
    bad_index = first_nonfinite_index(samples)
    if bad_index is not None:
        value = samples[:, bad_index][~np.isfinite(samples[:, bad_index])][0]
        raise DataError(
            f"sample {bad_index} (at {bad_index / sample_rate:.3f} s) is {value}; "
            "audio must hold finite numbers",
            path,
            "re-render or re-export the file; NaN/inf usually come from a crashed plugin or a "
            "division by zero upstream",
        )
    if is_silent(samples):
        peak = float(np.max(np.abs(samples)))
        raise DataError(
            f"is silent (peak |x| = {peak:.1e}, below {SILENCE_THRESHOLD:.0e})",
            path,
            "check the recording chain (muted track, wrong input) and record or export it again",
        )


def load_audio(path: str | PathLike, sample_rate: int) -> torch.Tensor:
    """Load a mono audio file as a float32 tensor ``(1, time)`` at ``sample_rate``.

    Files at another rate are resampled (and a warning names the file). Raises
    :class:`DataError` for a missing or unreadable file, more than one channel, NaN or
    infinite samples, and silence.
    """
    samples, file_rate = read_audio(path)
    if samples.shape[0] != 1:
        raise DataError(f"has {samples.shape[0]} channels; nablafx models are mono", path, MONO_FIX)
    check_samples(samples, file_rate, path)
    audio = torch.from_numpy(samples)
    if file_rate != sample_rate:
        # The warning names the file, so Python's warning registry reports each file once per process.
        warnings.warn(f"{path}: resampling from {file_rate} Hz to {sample_rate} Hz", stacklevel=2)
        audio = torchaudio.functional.resample(audio, file_rate, sample_rate)  # windowed sinc
    return audio
