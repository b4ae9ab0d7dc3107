"""Metrics: per-example sample-domain metrics, BS.1770 loudness difference, per-setting tables."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import torch

from nablafx.errors import ConfigError
from nablafx.training import metrics
from nablafx.training.losses import mrstft_loss
from nablafx.training.metrics import PerSettingMetrics

SR = 48000


def sine(seconds: float, amplitude: float = 0.5, frequency: float = 1000.0) -> np.ndarray:
    n = np.arange(int(round(seconds * SR)))
    return amplitude * np.sin(2 * np.pi * frequency * n / SR)


def batch(*signals: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.stack(signals))[:, None]  # (batch, 1, samples) float64


# --- per-example sample-domain metrics ------------------------------------------------------


def test_per_example_metrics_match_numpy_and_the_means_average_them(monkeypatch):
    rng = np.random.default_rng(0)
    y = rng.standard_normal((4, 2, 1000)) * np.array([0.01, 0.1, 1.0, 10.0])[:, None, None]
    y_hat = 0.9 * y + 0.01 * rng.standard_normal(y.shape)
    e = y - y_hat
    expected = {
        "esr": (e**2).sum((1, 2)) / (y**2).sum((1, 2)),
        "l1": np.abs(e).mean((1, 2)),
        "mse": (e**2).mean((1, 2)),
    }
    for name, values in expected.items():
        per_example = getattr(metrics, f"{name}_per_example")(torch.tensor(y_hat), torch.tensor(y))
        assert per_example.shape == (4,)
        np.testing.assert_allclose(per_example.numpy(), values, rtol=1e-7)
        assert getattr(metrics, name)(torch.tensor(y_hat), torch.tensor(y)).item() == pytest.approx(values.mean())

    seen = []
    real = metrics.esr_per_example
    monkeypatch.setattr(metrics, "esr_per_example", lambda *a: seen.append(1) or real(*a))
    metrics.esr(torch.tensor(y_hat), torch.tensor(y))
    assert seen == [1]  # the batch mean is the mean of the per-example function


def test_mrstft_per_example_is_one_loss_call_per_example():
    y = torch.randn(3, 1, 2048)
    y_hat = y + 0.1 * torch.randn_like(y) * torch.tensor([0.1, 1.0, 3.0])[:, None, None]
    values = metrics.mrstft_per_example(y_hat, y)
    loss = mrstft_loss()
    torch.testing.assert_close(values, torch.stack([loss(y_hat[i : i + 1], y[i : i + 1]) for i in range(3)]))


# --- loudness -------------------------------------------------------------------------------


def test_loudness_difference_of_a_sine_and_the_sine_at_minus_6_db_is_6_lu():
    x = sine(1.0)
    quiet = x * 10 ** (-6 / 20)
    meter = pyloudnorm.Meter(SR)
    reference = abs(meter.integrated_loudness(quiet) - meter.integrated_loudness(x))
    assert reference == pytest.approx(6.0, abs=1e-9)
    ours = metrics.loudness_difference_lufs(batch(quiet), batch(x), SR)
    assert ours.item() == pytest.approx(reference, abs=1e-9)
    np.testing.assert_allclose(
        metrics.integrated_loudness(batch(x, quiet), SR).numpy(),
        [meter.integrated_loudness(x), meter.integrated_loudness(quiet)],
    )


def test_loudness_difference_is_a_mean_of_absolute_per_example_differences():
    y = batch(sine(0.5), sine(0.5, 0.1, 300.0))
    y_hat = batch(sine(0.5) * 10 ** (3 / 20), sine(0.5, 0.1, 300.0) * 10 ** (-1 / 20))  # +3 dB, -1 dB
    per_example = metrics.loudness_difference_lufs_per_example(y_hat.float(), y.float(), SR)
    assert per_example.dtype == torch.float32 and per_example.shape == (2,)
    np.testing.assert_allclose(per_example.numpy(), [3.0, 1.0], atol=1e-4)
    assert metrics.loudness_difference_lufs(y_hat, y, SR).item() == pytest.approx(2.0, abs=1e-4)


def test_stereo_loudness_is_pyloudnorms_channel_sum():
    stereo = np.stack([sine(0.6), sine(0.6, 0.2, 440.0)])  # (channels, samples)
    ours = metrics.integrated_loudness(torch.tensor(stereo)[None], SR).item()
    assert ours == pytest.approx(pyloudnorm.Meter(SR).integrated_loudness(stereo.T))


def k_weighted_block_loudness(x: np.ndarray) -> float:
    """BS.1770 block loudness -0.691 + 10 log10(mean(z^2)) of one block spanning all of x."""
    meter = pyloudnorm.Meter(SR)
    z = x.copy()
    for stage in meter._filters.values():  # K-weighting: pyloudnorm's shelf + high-pass
        z = stage.apply_filter(z)
    return -0.691 + 10 * np.log10(np.mean(z**2))


@pytest.mark.parametrize("samples", [4800, 1001, 19199])
def test_loudness_of_a_segment_shorter_than_400_ms_is_one_block_over_all_of_it(samples):
    x = np.random.default_rng(samples).uniform(-0.5, 0.5, samples)
    with pytest.raises(ValueError):
        pyloudnorm.Meter(SR).integrated_loudness(x)  # pyloudnorm itself refuses
    ours = metrics.integrated_loudness(batch(x), SR).item()
    assert ours == pytest.approx(k_weighted_block_loudness(x), abs=1e-9)


def test_a_stationary_sine_measures_the_same_short_or_long():
    short = metrics.integrated_loudness(batch(sine(2.0)[:4800]), SR).item()
    long = metrics.integrated_loudness(batch(sine(2.0)), SR).item()
    assert short == pytest.approx(long, abs=0.01)


def test_silence_counts_as_the_absolute_gate_never_inf_or_nan():
    silence, tone = np.zeros(SR), sine(1.0)
    loudness = metrics.integrated_loudness(batch(silence, tone, tone * 1e-5), SR).numpy()
    assert np.isneginf(pyloudnorm.Meter(SR).integrated_loudness(silence))
    assert loudness[0] == metrics.LUFS_FLOOR == -70.0
    assert loudness[2] == -70.0  # -109 LUFS: below the gate
    differences = metrics.loudness_difference_lufs_per_example(batch(silence, silence), batch(silence, tone), SR)
    np.testing.assert_allclose(differences.numpy(), [0.0, loudness[1] + 70.0])
    assert torch.isfinite(differences).all()
    nan = metrics.loudness_difference_lufs(batch(np.full(SR, np.nan)), batch(tone), SR)
    assert torch.isnan(nan)  # a broken prediction stays visible, not read as silence
    inf = metrics.integrated_loudness(batch(np.where(np.arange(SR) == 7, np.inf, tone)), SR)
    assert torch.isnan(inf).all()


def test_loudness_config_errors():
    x = batch(sine(0.5))
    for rate in (None, 0, -48000, True):
        with pytest.raises(ConfigError, match="sample rate"):
            metrics.loudness_difference_lufs(x, x, rate)
    six = torch.zeros(1, 6, SR)
    with pytest.raises(ConfigError, match="at most 5 channels, got 6"):
        metrics.integrated_loudness(six, SR)


# --- per-setting table ------------------------------------------------------------------------


def test_setting_keys_name_the_knob_vector():
    knobs = torch.tensor([[0.3, 1.0], [0.25, 0.0]])
    assert metrics.setting_keys(knobs, ["G", "T"]) == ["G=0.3 T=1", "G=0.25 T=0"]
    assert metrics.setting_keys(knobs) == ["k0=0.3 k1=1", "k0=0.25 k1=0"]
    assert metrics.setting_keys(torch.zeros(3, 0)) == ["no knobs"] * 3
    assert metrics.setting_keys(None, batch_size=2) == ["no knobs"] * 2


def test_per_setting_accumulation_over_batches_equals_hand_grouped_means():
    rng = np.random.default_rng(3)
    knob_values = [0.0, 0.5, 1.0]
    acc = PerSettingMetrics()
    records = []  # (key, esr, l1, mse, lufs) per example
    for batch_size in (4, 3, 5, 1):
        knobs = torch.tensor(rng.choice(knob_values, size=(batch_size, 1)))
        y = torch.tensor(rng.standard_normal((batch_size, 1, SR // 2)) * 0.1)
        y_hat = y * (1 + knobs[:, :, None]) + 0.01 * torch.randn_like(y)  # error grows with the knob
        keys = metrics.setting_keys(knobs, ["G"])
        values = {
            "esr": metrics.esr_per_example(y_hat, y),
            "l1": metrics.l1_per_example(y_hat, y),
            "mse": metrics.mse_per_example(y_hat, y),
            "lufs_diff": metrics.loudness_difference_lufs_per_example(y_hat, y, SR),
        }
        acc.update(keys, **values)
        records += [(k, *(float(v[i]) for v in values.values())) for i, k in enumerate(keys)]

    rows = acc.rows()
    seen = list(dict.fromkeys(r[0] for r in records))
    assert [row["setting"] for row in rows] == seen  # first-seen order
    for row in rows:
        mine = np.array([r[1:] for r in records if r[0] == row["setting"]])
        assert row["examples"] == len(mine)
        np.testing.assert_allclose([row[n] for n in ("esr", "l1", "mse", "lufs_diff")], mine.mean(0), rtol=1e-12)
    overall = acc.overall()
    assert overall["examples"] == len(records) == sum(row["examples"] for row in rows)
    np.testing.assert_allclose(overall["esr"], np.mean([r[1] for r in records]), rtol=1e-12)
    assert rows[0].keys() == {"setting", "examples", "esr", "l1", "mse", "lufs_diff"}
    acc.reset()
    assert acc.rows() == [] and len(acc) == 0


def test_per_setting_esr_pools_the_energy_of_all_a_settings_audio():
    """ESR per setting = sum of error energy / sum of target energy over its examples: a quiet
    segment with a large ratio does not outweigh a loud one (a mean of ratios would give 0.5)."""
    acc = PerSettingMetrics(ratios={"esr": ("error_energy", "target_energy")})
    loud, quiet = torch.ones(1, 1, 100), 0.01 * torch.ones(1, 1, 100)
    for y, y_hat, key in ((loud, 0.99 * loud, "G=1"), (quiet, 0.0 * quiet, "G=1"), (loud, 0.9 * loud, "G=0")):
        acc.update([key], error_energy=(y - y_hat).pow(2).flatten(1).sum(-1), target_energy=y.pow(2).flatten(1).sum(-1),
                   l1=metrics.l1_per_example(y_hat, y))
    rows = {row["setting"]: row for row in acc.rows()}
    assert rows["G=1"]["esr"] == pytest.approx((100 * 0.01**2 + 100 * 0.01**2) / (100 + 100 * 0.01**2))
    assert rows["G=0"]["esr"] == pytest.approx(0.01)
    assert rows["G=1"].keys() == {"setting", "examples", "l1", "esr"}  # the parts are left out
    assert acc.overall()["esr"] == pytest.approx((0.01 + 0.01 + 1.0) / (200 + 0.01))


def test_per_setting_metrics_takes_sequences_and_catches_mismatches():
    acc = PerSettingMetrics()
    acc.update(["a", "b", "a"], esr=[1.0, 2.0, 3.0], l1=torch.tensor([[1.0], [1.0], [0.0]]))
    assert acc.rows() == [
        {"setting": "a", "examples": 2, "esr": 2.0, "l1": 0.5},
        {"setting": "b", "examples": 1, "esr": 2.0, "l1": 1.0},
    ]
    with pytest.raises(ValueError, match="metrics \\['esr'\\], earlier updates \\['esr', 'l1'\\]"):
        acc.update(["a"], esr=[1.0])
    with pytest.raises(ValueError, match="2 values for 3 settings"):
        acc.update(["a", "b", "c"], esr=[1.0, 2.0], l1=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="at least one metric"):
        PerSettingMetrics().update(["a"])
