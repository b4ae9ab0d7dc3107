"""The built-in synthetic dataset: dry signals, virtual devices, rendering and the CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import soundfile

from nablafx.commands import synth as synth_command
from nablafx.data.errors import DataError
from nablafx.data.synth import (
    DEVICES,
    knob_grid,
    make_dry,
    parse_knob_grid,
    render_dataset,
    setting_name,
)
from nablafx.data.synth import devices as devices_module
from nablafx.data.synth import render as render_module

SR = 48000
OVERDRIVE = DEVICES["overdrive"]
COMPRESSOR = DEVICES["compressor"]


def db(x: float) -> float:
    return 20.0 * np.log10(x)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def relative_files(root) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small overdrive dataset: two drive settings, 2 s trainval + 1 s test."""
    root = tmp_path_factory.mktemp("synth")
    render_dataset(root, knobs={"D": [0.0, 1.0]}, seconds=2.0, test_seconds=1.0, seed=3)
    return root


# --------------------------------------------------------------------------------------
# layout, format, determinism
# --------------------------------------------------------------------------------------


def test_layout_and_names_follow_tonetwist(dataset):
    dry = {
        "DRY/trainval/synth-gtr.input.wav",
        "DRY/trainval/synth-bass.input.wav",
        "DRY/test/synth-gtr-test.input.wav",
        "DRY/test/synth-bass-test.input.wav",
    }
    targets = {
        f"Synth-Overdrive/{split}/{setting}/{setting}.{name}.target.wav"
        for setting in ("D000_T050_L050", "D100_T050_L050")
        for split, names in (
            ("trainval", ("synth-gtr", "synth-bass")),
            ("test", ("synth-gtr-test", "synth-bass-test")),
        )
        for name in names
    }
    extra = {"DRY/synth.json", "Synth-Overdrive/README.md"}
    assert relative_files(dataset) == dry | targets | extra  # nothing half-written left over


def test_wavs_are_float32_mono_aligned_and_not_clipped(dataset):
    durations = {"trainval": 0.0, "test": 0.0}
    targets_checked = 0
    for path in (dataset / "DRY").rglob("*.input.wav"):
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (
            SR,
            1,
            "FLOAT",
            "WAV",
        )
        durations[path.parent.name] += info.duration
        dry, _ = soundfile.read(path, dtype="float32")
        assert np.max(np.abs(dry)) <= 0.9
        name = path.name.removesuffix(".input.wav")
        for target_path in (dataset / "Synth-Overdrive" / path.parent.name).glob(
            f"*/*.{name}.target.wav"
        ):
            target, rate = soundfile.read(target_path, dtype="float32")
            assert rate == SR and target.shape == dry.shape
            assert np.max(np.abs(target)) <= 1.0
            targets_checked += 1
    assert durations == pytest.approx({"trainval": 2.0, "test": 1.0})
    assert targets_checked == 4 * 2  # every dry file has a target per drive setting: none skipped by the glob


def test_readme_describes_device_knobs_and_settings(dataset):
    readme = (dataset / "Synth-Overdrive" / "README.md").read_text()
    for expected in (
        "overdrive",
        "drive",
        "tone",
        "level",
        "D000_T050_L050",
        "D100_T050_L050",
        "seed 3",
        "generator version",
    ):
        assert expected in readme


def test_same_arguments_give_byte_identical_files(dataset, tmp_path):
    render_dataset(tmp_path, knobs={"D": [0.0, 1.0]}, seconds=2.0, test_seconds=1.0, seed=3)
    assert relative_files(tmp_path) == relative_files(dataset)
    for relative in relative_files(dataset):
        assert (tmp_path / relative).read_bytes() == (dataset / relative).read_bytes(), relative


def test_dry_is_deterministic_per_seed():
    first = make_dry("guitar", 1.0, SR, seed=7)
    assert first.dtype == np.float32 and first.shape == (SR,)
    assert np.array_equal(first, make_dry("guitar", 1.0, SR, seed=7))
    assert not np.array_equal(first, make_dry("guitar", 1.0, SR, seed=8))
    assert not np.array_equal(first, make_dry("bass", 1.0, SR, seed=7))


def test_dry_levels_vary_across_the_file_without_clipping():
    dry = make_dry("bass", 20.0, SR, seed=0)
    assert np.max(np.abs(dry)) <= 0.9
    window_peaks = db(
        np.max(np.abs(dry[: len(dry) // 4800 * 4800].reshape(-1, 4800)), axis=1) + 1e-12
    )
    sounding = window_peaks[window_peaks > -60.0]
    assert sounding.max() - sounding.min() > 10.0


# --------------------------------------------------------------------------------------
# overdrive
# --------------------------------------------------------------------------------------


def linear_fit_residual_db(x: np.ndarray, y: np.ndarray, taps: int = 64) -> float:
    """Energy of what the least-squares causal FIR from x to y leaves unexplained, relative to y.

    The FIR is the least-squares solution over the convolution matrix of x (SVD-based
    ``lstsq``). Solving the normal (Wiener-Hopf) equations instead squares the condition
    number: for band-limited guitar audio their Toeplitz matrix has a condition number
    near 1e18, so Levinson's recursion returned anything from -85 dB to -37 dB on the same
    signal depending on the scipy/numpy build.
    """
    x, y = x.astype(np.float64), y.astype(np.float64)
    convolution = scipy.linalg.toeplitz(x, np.r_[x[0], np.zeros(taps - 1)])
    fir, *_ = np.linalg.lstsq(convolution, y, rcond=None)
    residual = y - convolution @ fir
    return 10.0 * np.log10(np.sum(residual**2) / np.sum(y**2))


def harmonic_distortion_db(y: np.ndarray, f0: float) -> float:
    """Energy of harmonics 2..9 relative to the fundamental, from a Hann-windowed FFT."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    frequencies = np.fft.rfftfreq(len(y), 1.0 / SR)

    def band(f: float) -> float:
        return float(spectrum[np.abs(frequencies - f) < 20.0].sum())

    return 10.0 * np.log10(sum(band(k * f0) for k in range(2, 10)) / band(f0))


def test_overdrive_is_linear_at_minimum_drive_for_low_levels():
    dry = make_dry("guitar", 1.0, SR, seed=1)
    quiet = dry * (10 ** (-40 / 20) / np.max(np.abs(dry)))
    # float32 output leaves about -125 dB; the diodes at minimum drive and -40 dBFS add far less
    assert linear_fit_residual_db(quiet, OVERDRIVE.process(quiet, SR, D=0.0)) < -80.0
    assert linear_fit_residual_db(quiet, OVERDRIVE.process(quiet, SR, D=1.0)) > -25.0


def test_overdrive_distortion_grows_with_drive():
    sine = 10 ** (-30 / 20) * np.sin(2 * np.pi * 500.0 * np.arange(SR // 2) / SR)
    distortion = [
        harmonic_distortion_db(OVERDRIVE.process(sine, SR, D=d)[SR // 10 :], 500.0)
        for d in (0.0, 0.5, 1.0)
    ]
    assert distortion[0] < -60.0
    assert distortion[0] < distortion[1] < distortion[2]
    assert distortion[2] > -20.0


@pytest.mark.parametrize("tone", [0.0, 0.5, 1.0])
def test_overdrive_adds_no_latency(tone):
    noise = 1e-3 * np.random.default_rng(0).standard_normal(SR // 2)
    out = OVERDRIVE.process(noise, SR, D=0.0, T=tone, L=1.0).astype(np.float64)
    lags = np.arange(-32, 33)
    correlation = [
        np.dot(
            out[max(lag, 0) : len(out) + min(lag, 0)],
            noise[max(-lag, 0) : len(noise) - max(lag, 0)],
        )
        for lag in lags
    ]
    assert lags[np.argmax(correlation)] == 0


@pytest.mark.parametrize("drive", [0.0, 1.0])
def test_overdrive_is_causal(drive):
    """Changing the input from sample n on leaves every output before n as it was (a causal
    model can learn the device exactly), and changes the output at n itself."""
    loud = make_dry("guitar", 0.5, SR, seed=4) * 2.0
    changed = loud.copy()
    n = SR // 4
    changed[n:] = np.random.default_rng(5).uniform(-1.0, 1.0, len(loud) - n)
    before, after = OVERDRIVE.process(loud, SR, D=drive), OVERDRIVE.process(changed, SR, D=drive)
    np.testing.assert_array_equal(after[:n], before[:n])
    assert after[n] != before[n]


def test_overdrive_stays_within_full_scale_at_maximum_settings():
    for kind in ("guitar", "bass"):
        dry = make_dry(kind, 4.0, SR, seed=2)
        assert np.max(np.abs(OVERDRIVE.process(dry, SR, D=1.0, T=1.0, L=1.0))) < 1.0


def test_oversampling_in_chunks_equals_one_pass(monkeypatch):
    loud = make_dry("guitar", 0.5, SR, seed=4) * 2.0
    one_pass = OVERDRIVE.process(loud, SR, D=0.8)
    monkeypatch.setattr(devices_module, "OVERSAMPLED_CHUNK", 997)
    np.testing.assert_allclose(OVERDRIVE.process(loud, SR, D=0.8), one_pass, atol=1e-7)


def test_process_checks_knobs_and_shape():
    out = OVERDRIVE.process(np.zeros(100, dtype=np.float32), SR)
    assert out.dtype == np.float32 and out.shape == (100,)
    with pytest.raises(ValueError, match=r"no knob X.*D \(drive\), T \(tone\), L \(level\)"):
        OVERDRIVE.process(np.zeros(10), SR, X=0.5)
    with pytest.raises(ValueError, match="outside"):
        OVERDRIVE.process(np.zeros(10), SR, D=1.5)
    with pytest.raises(ValueError, match="mono"):
        OVERDRIVE.process(np.zeros((2, 10)), SR)


# --------------------------------------------------------------------------------------
# compressor
# --------------------------------------------------------------------------------------


def quiet_then_loud(seconds: float = 0.5, quiet_db: float = -40.0, loud_db: float = -6.0):
    t = np.arange(int(seconds * SR)) / SR
    sine = np.sin(2 * np.pi * 1000.0 * t)
    return np.concatenate([10 ** (quiet_db / 20) * sine, 10 ** (loud_db / 20) * sine])


def level_range_db(x: np.ndarray) -> float:
    """Loud minus quiet level, each measured over the settled second half of its section."""
    half = len(x) // 2
    return db(rms(x[half + half // 2 :])) - db(rms(x[half // 2 : half]))


def test_compressor_reduces_dynamic_range_more_at_high_ratio_low_threshold():
    x = quiet_then_loud()
    unity = level_range_db(COMPRESSOR.process(x, SR, R=0.0))  # ratio 1:1
    gentle = level_range_db(COMPRESSOR.process(x, SR, T=0.7, R=0.3))
    hard = level_range_db(COMPRESSOR.process(x, SR, T=0.2, R=1.0))
    assert unity == pytest.approx(level_range_db(x), abs=0.01)
    assert level_range_db(x) - gentle > 3.0
    assert gentle - hard > 10.0


def gain_db_per_millisecond(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    blocks = len(x) // 48
    x_blocks = x[: blocks * 48].reshape(blocks, 48)
    y_blocks = y[: blocks * 48].reshape(blocks, 48).astype(np.float64)
    return db(np.sqrt(np.mean(y_blocks**2, axis=1) / np.mean(x_blocks**2, axis=1)))


def settle_ms(gain_db: np.ndarray, final_db: float, tolerance_db: float = 1.0) -> int:
    """First millisecond after which the gain stays within tolerance of its final value."""
    outside = np.flatnonzero(np.abs(gain_db - final_db) > tolerance_db)
    return int(outside[-1] + 1) if outside.size else 0


def test_compressor_attack_sets_how_fast_the_gain_falls():
    x = quiet_then_loud()
    onset = len(x) // 2
    times = []
    for attack in (0.0, 0.5, 1.0):
        gain = gain_db_per_millisecond(
            x[onset:], COMPRESSOR.process(x, SR, T=0.3, R=1.0, A=attack)[onset:]
        )
        times.append(settle_ms(gain, gain[-1]))
    assert times[0] < times[1] < times[2]
    assert times[0] <= 2


def test_compressor_release_sets_how_fast_the_gain_recovers():
    x = quiet_then_loud()[::-1]  # loud, then quiet (under the threshold)
    drop = len(x) // 2
    times = []
    for release in (0.0, 0.5, 1.0):
        gain = gain_db_per_millisecond(
            x[drop:], COMPRESSOR.process(x, SR, T=0.3, R=1.0, E=release)[drop:]
        )
        times.append(settle_ms(gain, 0.0))
    assert times[0] < times[1] < times[2]


# --------------------------------------------------------------------------------------
# knob grids
# --------------------------------------------------------------------------------------


def test_parse_knob_grid():
    assert parse_knob_grid(["D=0,0.5,1", "t=0.5"]) == {"D": [0.0, 0.5, 1.0], "T": [0.5]}
    assert parse_knob_grid([], "compressor") == {}
    assert parse_knob_grid(["M=0.25"], "compressor") == {"M": [0.25]}


@pytest.mark.parametrize(
    "specs, device, message",
    [
        (["X=0.5"], "overdrive", r"no knob X.*D \(drive\), T \(tone\), L \(level\)"),
        (["D=0.5"], "compressor", r"no knob D.*T \(threshold\), R \(ratio\), A \(attack\)"),
        (["D=1.5"], "overdrive", r"1\.5 is outside \[0, 1\]"),
        (["D=0,loud"], "overdrive", "'loud' is not a number"),
        (["D0.5"], "overdrive", r"not LETTER=VALUE.*D \(drive\)"),
        (["D="], "overdrive", "not LETTER=VALUE"),
        (["DT=0.5"], "overdrive", "not LETTER=VALUE"),
        (["D=0", "D=1"], "overdrive", "given twice"),
        (["D=0"], "fuzz", "unknown device 'fuzz'; choose from overdrive, compressor"),
    ],
)
def test_parse_knob_grid_errors(specs, device, message):
    with pytest.raises(ValueError, match=message):
        parse_knob_grid(specs, device)


def test_knob_grid_is_a_cartesian_product_with_defaults():
    grid = knob_grid("overdrive", {"D": [0.2, 0.8], "L": [0.0, 0.333, 0.33]})
    assert [setting_name(setting) for setting in grid] == [
        "D020_T050_L000",
        "D020_T050_L033",
        "D080_T050_L000",
        "D080_T050_L033",
    ]
    assert knob_grid("compressor") == [{"T": 0.5, "R": 0.5, "A": 0.5, "E": 0.5, "M": 0.0}]
    with pytest.raises(ValueError, match="empty"):
        knob_grid("overdrive", {"D": []})


# --------------------------------------------------------------------------------------
# sharing a folder, interrupted runs
# --------------------------------------------------------------------------------------


def test_devices_share_the_dry_files_of_one_folder(tmp_path):
    render_dataset(tmp_path, seconds=1.0, test_seconds=0.5, seed=5)
    dry_before = {path: path.read_bytes() for path in (tmp_path / "DRY").rglob("*.wav")}
    folder = render_dataset(
        tmp_path,
        device="compressor",
        knobs={"R": [0.2, 0.9]},
        seconds=1.0,
        test_seconds=0.5,
        seed=5,
    )
    assert folder == tmp_path / "Synth-Compressor"
    assert {path: path.read_bytes() for path in (tmp_path / "DRY").rglob("*.wav")} == dry_before
    assert len(list(folder.glob("*/*/*.target.wav"))) == 2 * 4
    assert (tmp_path / "Synth-Overdrive" / "README.md").is_file()
    with pytest.raises(DataError, match=r"seed 5.*seed 6"):
        render_dataset(tmp_path, device="compressor", seconds=1.0, test_seconds=0.5, seed=6)


def test_interrupted_render_leaves_no_partial_file(tmp_path, monkeypatch):
    written = []

    def crash_on_third_file(path):
        written.append(path)
        if len(written) == 3:
            raise KeyboardInterrupt
        clear_peak_timestamp(path)

    clear_peak_timestamp = render_module.clear_peak_timestamp
    monkeypatch.setattr(render_module, "clear_peak_timestamp", crash_on_third_file)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(tmp_path, seconds=0.5, test_seconds=0.5)
    assert relative_files(tmp_path) == {
        "DRY/trainval/synth-gtr.input.wav",
        "DRY/trainval/synth-bass.input.wav",
    }
    monkeypatch.undo()
    render_dataset(tmp_path, seconds=0.5, test_seconds=0.5)  # the rerun completes the set
    assert len(relative_files(tmp_path)) == 4 + 4 + 2


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def synth_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nablafx data synth")
    synth_command.add_arguments(parser)
    return parser


def test_cli_renders_and_summarises(tmp_path, capsys):
    args = synth_parser().parse_args(
        ["--out", str(tmp_path), "--knobs", "D=0.2,0.8", "T=0.5", "--seconds", "1", "--seed", "2"]
    )
    assert synth_command.run(args) == 0
    printed = capsys.readouterr().out
    assert "D020_T050_L050" in printed and "D080_T050_L050" in printed
    assert str(tmp_path / "Synth-Overdrive") in printed
    assert (
        tmp_path / "Synth-Overdrive/test/D080_T050_L050/D080_T050_L050.synth-gtr-test.target.wav"
    ).is_file()


def test_cli_reports_bad_knobs_with_the_valid_letters(tmp_path, capsys):
    args = synth_parser().parse_args(
        ["--out", str(tmp_path), "--device", "compressor", "--knobs", "D=1"]
    )
    assert synth_command.run(args) == 2
    assert "T (threshold), R (ratio)" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_help_lists_devices_knobs_and_an_example():
    text = synth_parser().format_help()
    assert "--knobs D=0,0.25,0.5,0.75,1" in text
    for device in DEVICES.values():
        assert device.folder in text
        assert all(name in text for name in device.knob_names.values())
