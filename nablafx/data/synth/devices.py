"""Virtual effect devices that render the targets of the built-in synthetic dataset.

Each device is a DSP model written here from first principles (numpy, scipy, numba),
independent of any model code in the toolkit, so a network trained on its output has
to learn it rather than copy it. Knobs are normalised to [0, 1] and named by one
letter, as in the ToneTwist settings (``D060_T050_L050``).

No device adds latency: outputs are sample-aligned with inputs, and at 44.1 and 48 kHz
every impulse response peaks at lag 0. Every device is causal, as the networks trained
on it are: an output sample depends on the input up to the same instant, so a causal
model can match the target exactly. Filters still have the group delay of their phase
response: with the
tone knob turned down, the overdrive's cross-correlation on bass-heavy material such as
guitar peaks a few samples late. That is the tone filter, which a causal model
reproduces, not a delay to compensate.

Devices
-------
overdrive
    input gain -> RC diode clipper ODE (8x oversampled) -> treble shelf -> output level.
    Inside, signals are volts, with digital full scale (1.0) = 1 V at the input, so the
    diode physics sees realistic voltages.
compressor
    feed-forward: peak level in dB -> soft-knee static curve -> attack/release
    smoothing of the gain -> make-up gain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numba
import numpy as np
from scipy.signal import lfilter
from nablafx.errors import ConfigError


def linear_map(value: float, low: float, high: float) -> float:
    """Knob value in [0, 1] -> ``low + value * (high - low)`` (used for gains in dB)."""
    return low + value * (high - low)


def log_map(value: float, low: float, high: float) -> float:
    """Knob value in [0, 1] -> ``low * (high / low) ** value`` (times, ratios, frequencies)."""
    return low * (high / low) ** value


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


@dataclass(frozen=True)
class VirtualDevice:
    """A virtual effect: its knobs and the function that renders audio through it.

    ``render(x, sample_rate, **knobs)`` receives float64 mono audio and every knob;
    :meth:`process` is the public entry point that validates and fills in defaults.
    """

    name: str
    folder: str
    description: str
    knobs: tuple[str, ...]
    knob_names: Mapping[str, str]
    knob_ranges: Mapping[str, str]
    defaults: Mapping[str, float]
    render: Callable[..., np.ndarray]

    def settings(self, knobs: Mapping[str, float] | None = None) -> dict[str, float]:
        """Every knob of the device in order: the given values, the defaults for the rest.

        Raises ``ValueError`` for a letter the device does not have or a value outside [0, 1].
        """
        knobs = dict(knobs or {})
        unknown = sorted(set(knobs) - set(self.knobs))
        if unknown:
            raise ConfigError(
                f"{self.name} has no knob {', '.join(unknown)}; its knobs are {self.knob_help()}"
            )
        for letter, value in knobs.items():
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(
                    f"{self.name} knob {letter} ({self.knob_names[letter]}) = {value} "
                    "is outside [0, 1]"
                )
        return {letter: float(knobs.get(letter, self.defaults[letter])) for letter in self.knobs}

    def knob_help(self) -> str:
        """``D (drive), T (tone), L (level)``: the valid letters, for messages."""
        return ", ".join(f"{letter} ({self.knob_names[letter]})" for letter in self.knobs)

    def process(self, x: np.ndarray, sample_rate: int, **knobs: float) -> np.ndarray:
        """Render mono audio through the device: float32 in, float32 out, same length, no delay."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise ConfigError(f"{self.name} processes mono audio of shape (time,), got {x.shape}")
        y = self.render(x.astype(np.float64), int(sample_rate), **self.settings(knobs))
        return y.astype(np.float32)


# --------------------------------------------------------------------------------------
# Causal oversampling without delay
# --------------------------------------------------------------------------------------

OVERSAMPLING = 8
# Chunk length (base-rate samples): bounds the memory of the 8x signal for long files.
OVERSAMPLED_CHUNK = 1 << 16


def oversampled(x: np.ndarray, factor: int, step: Callable, state) -> np.ndarray:
    """``step`` run at ``factor`` times the rate of ``x``, causally and with no delay.

    Up: the ``factor`` fast samples that end at base sample ``n`` run in a straight line
    from ``x[n-1]`` to ``x[n]`` (the last one is ``x[n]`` itself). Down: ``y[n]`` is the
    fast output at the instant of ``x[n]``. So ``y[n]`` depends on ``x[0..n]`` only, and a
    linear ``step`` of unit gain passes the signal unchanged. A band-limiting (sinc-like)
    interpolator or anti-alias filter would need future samples (zero phase) or add group
    delay (minimum phase); a causal model cannot reproduce the first, and a gray-box EQ
    chain barely the second. The price is aliasing of the harmonics that ``step`` leaves
    above the base Nyquist frequency (the clipper's own RC low-pass damps them).
    ``step(u, state) -> (v, state)`` must carry its state across chunks.
    """
    ramp = np.arange(1, factor + 1) / factor
    y = np.empty(len(x))
    previous = 0.0  # the signal is at rest before x[0]
    for start in range(0, len(x), OVERSAMPLED_CHUNK):
        chunk = x[start : start + OVERSAMPLED_CHUNK]
        before = np.concatenate(([previous], chunk[:-1]))
        up = (before[:, None] + ramp[None, :] * (chunk - before)[:, None]).ravel()
        v, state = step(up, state)
        y[start : start + len(chunk)] = v[factor - 1 :: factor]
        previous = chunk[-1]
    return y


# --------------------------------------------------------------------------------------
# Overdrive
# --------------------------------------------------------------------------------------

# RC low-pass with a pair of antiparallel 1N4148-like diodes across the capacitor
# (the diode clipper of D. Yeh, "Digital implementation of musical distortion
# circuits by analysis and simulation", 2009, with a smaller capacitor). The corner
# 1 / (2 pi R C) = 15.4 kHz keeps the group delay under half a sample at 48 kHz, so the
# impulse response peaks at lag 0 and the dataset stays aligned; at 10 nF (7.2 kHz) it
# peaks at lag 1.
CLIPPER_R_OHM = 2.2e3
CLIPPER_C_FARAD = 4.7e-9
DIODE_IS_AMP = 2.52e-9
DIODE_VT_VOLT = 45.3e-3  # thermal voltage times ideality factor
# Newton converges quadratically: a last step of 1e-8 V leaves an error near 1e-15 V.
NEWTON_TOLERANCE_VOLT = 1e-8
NEWTON_MAX_ITERATIONS = 50
# Newton on an exponential overshoots from below; capping the step keeps sinh finite.
NEWTON_MAX_STEP_VOLT = 0.1

OVERDRIVE_DRIVE_DB = (0.0, 40.0)
# Treble shelf: tone 0 cuts the highs by 12 dB, tone 1 is flat. A deeper cut would make
# the shelf mostly a low-pass, whose group delay moves the impulse-response peak to lag 1.
OVERDRIVE_SHELF_DB = (-12.0, 0.0)
OVERDRIVE_SHELF_CORNER_HZ = 800.0
OVERDRIVE_LEVEL_DB = (-20.0, 6.0)
# Clipper voltage that leaves the device at full scale with the level at 0 dB. Clipped
# peaks reach ~0.75 V (more on hard-clipped noise); 2.6 V keeps the output under ~0.9 at
# level +6 dB (and near unity gain at drive 0, level 1 for small signals).
OVERDRIVE_OUTPUT_VOLT = 2.6


@numba.njit(cache=True)
def _diode_clipper_step(vin, sample_period, v):
    """Solve the diode clipper ODE over ``vin`` (volts) with the backward Euler rule.

    ODE for the capacitor voltage ``v`` (the output)::

        dv/dt = f(v, vin) = (vin - v) / (R C) - (2 Is / C) sinh(v / Vt)

    Backward Euler, implicit in ``v[n]``::

        g(v[n]) = v[n] - v[n-1] - T f(v[n], vin[n]) = 0

    solved by Newton's method from ``v[n-1]``, with
    ``g'(v) = 1 + T / (R C) + (2 Is T / (C Vt)) cosh(v / Vt)`` (> 1: the root is unique).

    Backward Euler rather than the trapezoidal rule: when the diodes conduct, the ODE is
    stiff (time constant C Vt / i of tens of ns against a 2.6 us step at 8 x 48 kHz), and
    the trapezoidal rule, A- but not L-stable, leaves a slowly decaying oscillation at the
    oversampled Nyquist frequency, which the nonlinearity folds back into the audio band.
    Backward Euler damps it at once; its first-order error lengthens the linear RC time
    constant by about T / 2 (a 2.6 us step against 10.3 us). Returns the voltages and
    the last one (the state).
    """
    rc_rate = 1.0 / (CLIPPER_R_OHM * CLIPPER_C_FARAD)
    diode_rate = 2.0 * DIODE_IS_AMP / CLIPPER_C_FARAD
    linear_derivative = 1.0 + sample_period * rc_rate
    out = np.empty_like(vin)
    for n in range(len(vin)):
        v_previous = v
        for _ in range(NEWTON_MAX_ITERATIONS):
            # one exponential gives both sinh and cosh
            growth = math.exp(v / DIODE_VT_VOLT)
            sinh = 0.5 * (growth - 1.0 / growth)
            cosh = 0.5 * (growth + 1.0 / growth)
            residual = (
                linear_derivative * v
                - v_previous
                - sample_period * (rc_rate * vin[n] - diode_rate * sinh)
            )
            derivative = linear_derivative + sample_period * diode_rate / DIODE_VT_VOLT * cosh
            delta = min(max(residual / derivative, -NEWTON_MAX_STEP_VOLT), NEWTON_MAX_STEP_VOLT)
            v -= delta
            if abs(delta) < NEWTON_TOLERANCE_VOLT:
                break
        out[n] = v
    return out, v


def diode_clipper(vin: np.ndarray, sample_rate: int) -> np.ndarray:
    """The diode clipper at ``OVERSAMPLING`` x ``sample_rate``, starting from rest."""
    fast_period = 1.0 / (sample_rate * OVERSAMPLING)

    def step(u, v):
        return _diode_clipper_step(u, fast_period, v)

    return oversampled(vin, OVERSAMPLING, step, 0.0)


def treble_shelf(x: np.ndarray, sample_rate: int, shelf_db: float, corner_hz: float) -> np.ndarray:
    """First-order high shelf that only cuts: ``y = lp(x) + g (x - lp(x))``, ``g = 10^(dB/20)``.

    ``lp`` is the impulse-invariant one-pole low-pass ``lp[n] = (1 - a) x[n] + a lp[n-1]``,
    ``a = exp(-2 pi corner_hz / sample_rate)``. Its impulse response ``(1 - a) a^n`` is
    positive and largest at n = 0, so the shelf has unit DC gain, never overshoots
    (sum |h| = 1) and adds no delay: the direct path ``g + (1 - g)(1 - a)`` dominates.
    """
    pole = math.exp(-2.0 * math.pi * corner_hz / sample_rate)
    lowpassed = lfilter([1.0 - pole], [1.0, -pole], x)
    return lowpassed + db_to_gain(shelf_db) * (x - lowpassed)


def render_overdrive(x: np.ndarray, sample_rate: int, D: float, T: float, L: float) -> np.ndarray:
    """Overdrive: gain ``drive_db`` -> diode clipper -> treble shelf -> level ``level_db``."""
    drive_db = linear_map(D, *OVERDRIVE_DRIVE_DB)
    shelf_db = linear_map(T, *OVERDRIVE_SHELF_DB)
    level_db = linear_map(L, *OVERDRIVE_LEVEL_DB)
    clipped = diode_clipper(x * db_to_gain(drive_db), sample_rate)
    toned = treble_shelf(clipped, sample_rate, shelf_db, OVERDRIVE_SHELF_CORNER_HZ)
    return toned * (db_to_gain(level_db) / OVERDRIVE_OUTPUT_VOLT)


# --------------------------------------------------------------------------------------
# Compressor
# --------------------------------------------------------------------------------------

COMPRESSOR_THRESHOLD_DB = (-50.0, 0.0)
COMPRESSOR_RATIO = (1.0, 20.0)
COMPRESSOR_ATTACK_MS = (0.1, 100.0)
COMPRESSOR_RELEASE_MS = (10.0, 1000.0)
COMPRESSOR_MAKEUP_DB = (0.0, 24.0)
COMPRESSOR_KNEE_DB = 6.0
LEVEL_FLOOR_DB = -200.0  # level of digital silence, so log10 never sees zero


@numba.njit(cache=True)
def _static_gain_db(level_db, threshold_db, ratio, knee_db):
    """Soft-knee static curve (Giannoulis, Massberg & Reiss, JAES 2012), as a gain in dB.

    Output level ``y(x)``: ``x`` below the knee, ``T + (x - T) / R`` above it, and
    ``x + (1/R - 1)(x - T + W/2)^2 / (2 W)`` within ``|x - T| <= W / 2``. Returns ``y - x <= 0``.
    """
    overshoot = level_db - threshold_db
    if 2.0 * overshoot < -knee_db:
        return 0.0
    if 2.0 * abs(overshoot) <= knee_db:
        return (1.0 / ratio - 1.0) * (overshoot + 0.5 * knee_db) ** 2 / (2.0 * knee_db)
    return (1.0 / ratio - 1.0) * overshoot


@numba.njit(cache=True)
def _compressor_gain_db(x, threshold_db, ratio, knee_db, attack_pole, release_pole):
    """Smoothed gain (dB) of a feed-forward compressor with a branching one-pole smoother.

    The detector is the instantaneous peak level ``20 log10 |x[n]|``; the static curve gives
    the target gain ``c[n] <= 0``; the smoothed gain follows it with the attack pole while
    the gain falls (more reduction) and with the release pole while it recovers::

        g[n] = a g[n-1] + (1 - a) c[n],   a = attack_pole if c[n] < g[n-1] else release_pole
    """
    gain = np.empty_like(x)
    smoothed = 0.0
    for n in range(len(x)):
        level_db = 20.0 * math.log10(abs(x[n])) if x[n] != 0.0 else LEVEL_FLOOR_DB
        target = _static_gain_db(level_db, threshold_db, ratio, knee_db)
        pole = attack_pole if target < smoothed else release_pole
        smoothed = pole * smoothed + (1.0 - pole) * target
        gain[n] = smoothed
    return gain


def one_pole_coefficient(time_constant_ms: float, sample_rate: int) -> float:
    """Pole ``exp(-1 / (tau fs))``: the smoother covers 1 - 1/e of a step in ``tau``."""
    return math.exp(-1000.0 / (time_constant_ms * sample_rate))


def render_compressor(
    x: np.ndarray, sample_rate: int, T: float, R: float, A: float, E: float, M: float
) -> np.ndarray:
    """Compressor: ``y[n] = x[n] 10^((g[n] + makeup_db) / 20)``, ``g`` the smoothed gain in dB."""
    threshold_db = linear_map(T, *COMPRESSOR_THRESHOLD_DB)
    ratio = log_map(R, *COMPRESSOR_RATIO)
    attack_ms = log_map(A, *COMPRESSOR_ATTACK_MS)
    release_ms = log_map(E, *COMPRESSOR_RELEASE_MS)
    makeup_db = linear_map(M, *COMPRESSOR_MAKEUP_DB)
    gain_db = _compressor_gain_db(
        x,
        threshold_db,
        ratio,
        COMPRESSOR_KNEE_DB,
        one_pole_coefficient(attack_ms, sample_rate),
        one_pole_coefficient(release_ms, sample_rate),
    )
    return x * 10.0 ** ((gain_db + makeup_db) / 20.0)


def span(bounds: tuple[float, float]) -> str:
    """``(0.0, 40.0)`` -> ``"0..40"``, for the knob descriptions."""
    return f"{bounds[0]:g}..{bounds[1]:g}"


DEVICES: dict[str, VirtualDevice] = {
    "overdrive": VirtualDevice(
        name="overdrive",
        folder="Synth-Overdrive",
        description=(
            "Overdrive pedal: input gain, RC + antiparallel diode clipper ODE solved per "
            f"sample (backward Euler + Newton, {OVERSAMPLING}x oversampled, causal), "
            "first-order treble shelf, output level. No latency."
        ),
        knobs=("D", "T", "L"),
        knob_names={"D": "drive", "T": "tone", "L": "level"},
        knob_ranges={
            "D": f"input gain {span(OVERDRIVE_DRIVE_DB)} dB, linear in dB",
            "T": f"treble shelf {span(OVERDRIVE_SHELF_DB)} dB above "
            f"{OVERDRIVE_SHELF_CORNER_HZ:g} Hz, linear in dB",
            "L": f"output level {span(OVERDRIVE_LEVEL_DB)} dB, linear in dB",
        },
        defaults={"D": 0.5, "T": 0.5, "L": 0.5},
        render=render_overdrive,
    ),
    "compressor": VirtualDevice(
        name="compressor",
        folder="Synth-Compressor",
        description=(
            "Feed-forward compressor: peak level in dB, soft-knee static curve "
            f"({COMPRESSOR_KNEE_DB:g} dB knee), branching attack/release one-pole smoothing "
            "of the gain, make-up gain. Causal, no latency."
        ),
        knobs=("T", "R", "A", "E", "M"),
        knob_names={"T": "threshold", "R": "ratio", "A": "attack", "E": "release", "M": "make-up"},
        knob_ranges={
            "T": f"threshold {span(COMPRESSOR_THRESHOLD_DB)} dB, linear in dB",
            "R": f"ratio {span(COMPRESSOR_RATIO)} : 1, logarithmic",
            "A": f"attack time constant {span(COMPRESSOR_ATTACK_MS)} ms, logarithmic",
            "E": f"release time constant {span(COMPRESSOR_RELEASE_MS)} ms, logarithmic",
            "M": f"make-up gain {span(COMPRESSOR_MAKEUP_DB)} dB, linear in dB",
        },
        # Make-up 0 dB by default: the gain never exceeds 0 dB, so the output never
        # exceeds the input. Make-up gain lets transients through at full gain before
        # the attack catches them, so high make-up can push peaks past full scale.
        defaults={"T": 0.5, "R": 0.5, "A": 0.5, "E": 0.5, "M": 0.0},
        render=render_compressor,
    ),
}
