"""Dry guitar- and bass-like signals synthesised in code, so training needs no recordings.

A file is a sequence of *sections* separated by short silences. Each section holds one
kind of material and is scaled to its own peak level, drawn uniformly in dB between
-30 and -3 dBFS, so every file drives a device across a 27 dB range without clipping:

``notes``      single-note lines of plucked strings (monophonic: a new note damps the last)
``chords``     strummed chords (guitar) or double stops (bass)
``palm_mute``  short, dark, dampened notes on the low strings in a steady rhythm
``sweep``      logarithmic sine sweep from 20 Hz to 20 kHz (or 0.45 x the sample rate)
``noise``      bursts of white or low-passed noise

Sections come in shuffled rounds of the instrument's section kinds, so a file longer
than one round holds every kind. Everything is drawn from ``np.random.default_rng(seed)``
in a fixed order: the same arguments give the same samples.

Plucked-string model (a sum of exponentially decaying inharmonic partials)::

    s(t) = sum_k a_k exp(-sigma_k t) sin(2 pi f_k t + phi_k)
    f_k     = k f0 sqrt(1 + B k^2)                  stiff-string inharmonicity B
    a_k     = velocity sin(pi k p) / k^slope        pick at fraction p of the string
              / sqrt(1 + (f_k / f_pickup)^4)        (comb filter), brighter when louder
    sigma_k = 1 / tau + damping (f_k / 1 kHz)^2     high partials die first

plus a short noise transient for the pick, a 1-3 ms onset and a damping fade at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy.signal import lfilter
from nablafx.errors import ConfigError

PEAK_DB_RANGE = (-30.0, -3.0)
GAP_SECONDS = (0.05, 0.5)
SWEEP_HZ = (20.0, 20000.0)
FADE_SECONDS = 0.005
DAMPING_FADE_SECONDS = 0.015  # a finger or palm stopping a string
MAX_PARTIALS = 64
MAX_PARTIAL_HZ = 12000.0
PARTIAL_FLOOR = 1e-6  # stop a partial once it has decayed to this fraction (-120 dB)


def midi_to_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


@dataclass(frozen=True)
class Instrument:
    """Ranges that make the material guitar- or bass-like (pitches as MIDI note numbers)."""

    lowest_note: int
    highest_note: int
    chord_shapes: tuple[tuple[int, ...], ...]  # semitones above the root, low string first
    highest_chord_root: int
    inharmonicity: tuple[float, float]
    decay_seconds: tuple[float, float]  # decay time constant of the fundamental at 110 Hz
    pickup_hz: tuple[float, float]
    section_kinds: tuple[str, ...]


INSTRUMENTS: dict[str, Instrument] = {
    "guitar": Instrument(
        lowest_note=40,  # E2
        highest_note=88,  # E6
        chord_shapes=(
            (0, 7, 12),  # power chord
            (0, 7, 12, 16, 19, 24),  # major, E-shape
            (0, 7, 12, 15, 19, 24),  # minor, E-shape
            (0, 7, 10, 16, 19),  # dominant seventh
            (0, 4, 7, 12, 16),  # open major voicing
        ),
        highest_chord_root=57,  # A3
        inharmonicity=(1e-5, 1e-4),
        decay_seconds=(1.0, 4.0),
        pickup_hz=(2500.0, 6000.0),
        section_kinds=("notes", "chords", "palm_mute", "notes", "chords", "sweep", "noise"),
    ),
    "bass": Instrument(
        lowest_note=28,  # E1
        highest_note=55,  # G3
        chord_shapes=((0, 7), (0, 12), (0, 7, 12)),
        highest_chord_root=43,  # G2
        inharmonicity=(1e-4, 5e-4),
        decay_seconds=(1.5, 5.0),
        pickup_hz=(1500.0, 4000.0),
        section_kinds=("notes", "notes", "chords", "palm_mute", "sweep", "noise"),
    ),
}


@numba.njit(cache=True)
def _decaying_partials(frequencies, amplitudes, decay_rates, phases, sample_rate, n_samples):
    """``sum_k a_k exp(-sigma_k n / fs) sin(2 pi f_k n / fs + phi_k)`` for n < n_samples.

    Each partial is a complex exponential advanced by one multiplication per sample
    (rotation by ``2 pi f_k / fs`` and decay by ``exp(-sigma_k / fs)``); it stops once it
    has decayed to ``PARTIAL_FLOOR``, which skips most of the work on high partials.
    """
    out = np.zeros(n_samples)
    for k in range(len(frequencies)):
        decay = math.exp(-decay_rates[k] / sample_rate)
        audible = min(n_samples, int(math.log(PARTIAL_FLOOR) / math.log(decay)) + 1)
        omega = 2.0 * math.pi * frequencies[k] / sample_rate
        rotate_re, rotate_im = decay * math.cos(omega), decay * math.sin(omega)
        re, im = amplitudes[k] * math.cos(phases[k]), amplitudes[k] * math.sin(phases[k])
        for n in range(audible):
            out[n] += im
            re, im = re * rotate_re - im * rotate_im, re * rotate_im + im * rotate_re
    return out


@dataclass(frozen=True)
class Pluck:
    """One plucked note: when it starts, how long it rings before it is damped, how."""

    onset: int  # samples from the start of the section
    ring: int  # samples until the string is damped
    note: float  # MIDI note number (fractional for detuning)
    velocity: float  # 0..1
    decay_seconds: float
    damping: float  # extra decay rate of high partials, 1/s at 1 kHz


def pluck_samples(pluck: Pluck, instrument: Instrument, rng: np.random.Generator, sample_rate: int):
    """Render one plucked note (partials + pick noise), ring time plus the damping fade."""
    f0 = midi_to_hz(pluck.note)
    k = np.arange(1, MAX_PARTIALS + 1)
    inharmonicity = rng.uniform(*instrument.inharmonicity)
    frequencies = k * f0 * np.sqrt(1.0 + inharmonicity * k**2)
    keep = frequencies < min(MAX_PARTIAL_HZ, 0.45 * sample_rate)
    k, frequencies = k[keep], frequencies[keep]
    pick_position = rng.uniform(0.08, 0.25)
    slope = 1.5 - 0.7 * pluck.velocity
    pickup_hz = rng.uniform(*instrument.pickup_hz)
    amplitudes = (
        pluck.velocity
        * np.sin(np.pi * k * pick_position)
        / k**slope
        / np.sqrt(1.0 + (frequencies / pickup_hz) ** 4)
    )
    decay_rates = 1.0 / pluck.decay_seconds + pluck.damping * (frequencies / 1000.0) ** 2
    phases = rng.uniform(0.0, 2.0 * np.pi, len(k))
    fade = int(DAMPING_FADE_SECONDS * sample_rate)
    n = pluck.ring + fade
    note = _decaying_partials(frequencies, amplitudes, decay_rates, phases, sample_rate, n)
    note += pick_noise(n, pluck.velocity, rng, sample_rate)
    onset = max(1, int(rng.uniform(0.001, 0.003) * sample_rate))
    note[:onset] *= raised_cosine(onset)
    note[n - fade :] *= raised_cosine(fade)[::-1]
    return note


def pick_noise(n: int, velocity: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """The pick scraping the string: low-passed noise decaying in 1-4 ms, louder when harder."""
    time_constant = rng.uniform(0.001, 0.004) * sample_rate
    envelope = np.exp(-np.arange(n) / time_constant)
    noise = one_pole_lowpass(rng.standard_normal(n), rng.uniform(2000.0, 6000.0), sample_rate)
    return 0.05 * velocity**2 * envelope * noise


def raised_cosine(n: int) -> np.ndarray:
    """Fade-in of ``n`` samples from 0 towards 1 (reverse it for a fade-out)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)


def one_pole_lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    pole = math.exp(-2.0 * math.pi * cutoff_hz / sample_rate)
    return lfilter([1.0 - pole], [1.0, -pole], x)


def mix_plucks(plucks: list[Pluck], instrument: Instrument, n: int, rng, sample_rate: int):
    """Sum the plucks into ``n`` samples, cutting off whatever rings past the end."""
    out = np.zeros(n)
    for pluck in plucks:
        note = pluck_samples(pluck, instrument, rng, sample_rate)[: n - pluck.onset]
        out[pluck.onset : pluck.onset + len(note)] += note
    return out


def beat_samples(rng: np.random.Generator, sample_rate: int, bpm: tuple[float, float]) -> int:
    return int(60.0 / rng.uniform(*bpm) * sample_rate)


def phrase_velocities(count: int, rng: np.random.Generator) -> np.ndarray:
    """Velocities in 0.2..1 that follow a crescendo or diminuendo, with per-note jitter."""
    start, end = rng.uniform(0.2, 1.0, 2)
    jitter = rng.uniform(-0.15, 0.15, count)
    return np.clip(np.linspace(start, end, count) + jitter, 0.2, 1.0)


def string_decay(note: float, instrument: Instrument, rng) -> float:
    """Decay time of the fundamental: drawn at 110 Hz, shorter for higher notes."""
    return rng.uniform(*instrument.decay_seconds) * math.sqrt(110.0 / midi_to_hz(note))


def notes_section(instrument: Instrument, n: int, rng, sample_rate: int) -> np.ndarray:
    """A monophonic line: a random walk over the range, eighths to half notes, some rests."""
    beat = beat_samples(rng, sample_rate, (70.0, 160.0))
    onsets, lengths = [], []
    time = 0
    while time < n:
        length = int(beat * rng.choice([0.5, 1.0, 1.0, 2.0]))
        if rng.uniform() > 0.1:  # a tenth of the slots are rests
            onsets.append(time)
            lengths.append(length)
        time += length
    note = rng.integers(instrument.lowest_note, instrument.highest_note - 11)
    velocities = phrase_velocities(len(onsets), rng)
    plucks = []
    for onset, length, velocity in zip(onsets, lengths, velocities, strict=True):
        note = reflect(note + rng.integers(-5, 6), instrument.lowest_note, instrument.highest_note)
        plucks.append(
            Pluck(
                onset,
                length,
                note,
                velocity,
                string_decay(note, instrument, rng),
                damping=rng.uniform(0.5, 2.0),
            )
        )
    return mix_plucks(plucks, instrument, n, rng, sample_rate)


def reflect(note: float, lowest: float, highest: float) -> float:
    """Fold a note back into [lowest, highest], as a player turns at the end of the neck."""
    if note < lowest:
        return 2 * lowest - note
    if note > highest:
        return 2 * highest - note
    return note


def chords_section(instrument: Instrument, n: int, rng, sample_rate: int) -> np.ndarray:
    """Strummed chords, down or up, each ringing until the next (strings slightly detuned)."""
    beat = beat_samples(rng, sample_rate, (60.0, 140.0))
    plucks = []
    time = 0
    while time < n:
        length = int(beat * rng.choice([1.0, 2.0, 4.0]))
        shape = instrument.chord_shapes[rng.integers(len(instrument.chord_shapes))]
        root = rng.integers(instrument.lowest_note, instrument.highest_chord_root + 1)
        strings = [root + interval for interval in shape]
        if rng.uniform() < 0.5:  # up-strum: the high strings first
            strings.reverse()
        spread = rng.uniform(0.005, 0.04) * sample_rate / len(strings)
        velocity = rng.uniform(0.2, 1.0)
        for index, string in enumerate(strings):
            onset = time + int(index * spread)
            note = string + rng.uniform(-0.03, 0.03)  # +-3 cents
            plucks.append(
                Pluck(
                    onset,
                    max(length - (onset - time), 1),
                    note,
                    float(np.clip(velocity + rng.uniform(-0.1, 0.1), 0.1, 1.0)),
                    string_decay(note, instrument, rng),
                    damping=rng.uniform(0.5, 2.0),
                )
            )
        time += length
    plucks = [pluck for pluck in plucks if pluck.onset < n]
    return mix_plucks(plucks, instrument, n, rng, sample_rate)


def palm_mute_section(instrument: Instrument, n: int, rng, sample_rate: int) -> np.ndarray:
    """Chugging eighths or sixteenths rooted on the lowest strings, heavily damped."""
    step = int(beat_samples(rng, sample_rate, (90.0, 180.0)) * rng.choice([0.5, 0.25]))
    root = rng.integers(instrument.lowest_note, instrument.lowest_note + 8)
    shape = (0, 7) if rng.uniform() < 0.5 else (0,)
    count = -(-n // step)
    velocities = phrase_velocities(count, rng)
    plucks = []
    for index, velocity in enumerate(velocities):
        root_now = root + (rng.choice([0, 0, 0, 2, 3, 5]) if index % 8 == 7 else 0)
        for interval in shape:
            plucks.append(
                Pluck(
                    index * step,
                    int(step * rng.uniform(0.5, 0.95)),
                    root_now + interval,
                    velocity,
                    decay_seconds=rng.uniform(0.04, 0.15),
                    damping=rng.uniform(10.0, 40.0),
                )
            )
    return mix_plucks(plucks, instrument, n, rng, sample_rate)


def sweep_section(instrument: Instrument, n: int, rng, sample_rate: int) -> np.ndarray:
    """Logarithmic sine sweep over the whole section (Farina): ``sin(2 pi f1 L (e^(t/L) - 1))``,
    ``L = duration / ln(f2 / f1)``, with short fades at both ends."""
    start_hz = SWEEP_HZ[0]
    stop_hz = min(SWEEP_HZ[1], 0.45 * sample_rate)
    duration = n / sample_rate
    rate = duration / math.log(stop_hz / start_hz)
    t = np.arange(n) / sample_rate
    sweep = np.sin(2.0 * np.pi * start_hz * rate * np.expm1(t / rate))
    return faded(sweep, sample_rate)


def faded(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """``x`` with a short raised-cosine fade-in and fade-out (no clicks at section edges)."""
    fade = min(int(FADE_SECONDS * sample_rate), len(x) // 2)
    ramp = raised_cosine(fade)
    x[:fade] *= ramp
    x[len(x) - fade :] *= ramp[::-1]
    return x


def noise_section(instrument: Instrument, n: int, rng, sample_rate: int) -> np.ndarray:
    """Bursts of 20-400 ms of white or low-passed noise, +-10 dB apart, decaying or steady."""
    out = np.zeros(n)
    time = int(rng.uniform(0.0, 0.1) * sample_rate)
    while time < n:
        length = min(int(rng.uniform(0.02, 0.4) * sample_rate), n - time)
        burst = rng.standard_normal(length)
        if rng.uniform() < 0.6:
            cutoff_hz = math.exp(rng.uniform(math.log(300.0), math.log(0.45 * sample_rate)))
            burst = one_pole_lowpass(burst, cutoff_hz, sample_rate)
        burst /= np.max(np.abs(burst))
        if rng.uniform() < 0.5:
            burst *= np.exp(-np.arange(length) / (rng.uniform(0.01, 0.1) * sample_rate))
        out[time : time + length] = faded(burst, sample_rate) * 10.0 ** (rng.uniform(-10, 0) / 20)
        time += length + int(rng.uniform(0.03, 0.3) * sample_rate)
    return out


SECTIONS: dict[str, Callable[[Instrument, int, np.random.Generator, int], np.ndarray]] = {
    "notes": notes_section,
    "chords": chords_section,
    "palm_mute": palm_mute_section,
    "sweep": sweep_section,
    "noise": noise_section,
}
SECTION_SECONDS = {
    "notes": (3.0, 8.0),
    "chords": (3.0, 8.0),
    "palm_mute": (2.0, 6.0),
    "sweep": (1.5, 4.0),
    "noise": (1.5, 3.0),
}


def make_dry(kind: str, seconds: float, sample_rate: int, seed: int | Sequence[int]) -> np.ndarray:
    """``seconds`` of dry guitar-like (``kind="guitar"``) or bass-like (``"bass"``) audio.

    Returns float32 mono samples, peaks at most -3 dBFS. ``seed`` goes to
    ``np.random.default_rng`` (an int, or a sequence of ints to derive per-file seeds).
    """
    if kind not in INSTRUMENTS:
        raise ConfigError(f"unknown dry signal kind {kind!r}; choose from {', '.join(INSTRUMENTS)}")
    if seconds <= 0:
        raise ConfigError(f"seconds must be positive, got {seconds}")
    instrument = INSTRUMENTS[kind]
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    pieces, length = [], 0
    while length < n:
        for section_kind in rng.permutation(instrument.section_kinds):
            section_n = int(rng.uniform(*SECTION_SECONDS[section_kind]) * sample_rate)
            section = SECTIONS[section_kind](instrument, section_n, rng, sample_rate)
            peak_db = rng.uniform(*PEAK_DB_RANGE)
            gap = np.zeros(int(rng.uniform(*GAP_SECONDS) * sample_rate))
            peak = np.max(np.abs(section), initial=1e-12)  # a section of rests stays silent
            pieces += [section * (10.0 ** (peak_db / 20.0) / peak), gap]
            length += section_n + len(gap)
            if length >= n:
                break
    dry = np.concatenate(pieces)[:n]
    fade = min(int(FADE_SECONDS * sample_rate), n)  # the cut at the end must not click
    dry[n - fade :] *= raised_cosine(fade)[::-1]
    return dry.astype(np.float32)
