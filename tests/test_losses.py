"""EffectLoss: each term against a hand computation, pre-emphasis, weighting, config errors."""

from __future__ import annotations

import auraloss
import numpy as np
import pytest
import scipy.signal
import torch

from nablafx.errors import ConfigError
from nablafx.training import losses, metrics
from nablafx.training.losses import LOSS_TERMS, EffectLoss, PreEmphasis

SR = 48000


@pytest.fixture
def pair():
    """A (3, 1, 4096) target and a prediction with gain, offset and noise errors, float64."""
    rng = np.random.default_rng(0)
    y = rng.standard_normal((3, 1, 4096)) * np.array([0.1, 1.0, 0.5])[:, None, None]
    y_hat = 0.8 * y + 0.02 + 0.05 * rng.standard_normal(y.shape)
    return y_hat, y


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def np_esr(y_hat, y):
    """sum((y - y_hat)^2) / sum(y^2) per example, batch mean."""
    axes = tuple(range(1, y.ndim))
    return np.mean(((y - y_hat) ** 2).sum(axes) / (y**2).sum(axes))


def np_dc(y_hat, y):
    """Wright & Välimäki's DC loss per example and channel: (mean(y - y_hat))^2 / mean(y^2), mean."""
    return np.mean((y - y_hat).mean(-1) ** 2 / (y**2).mean(-1))


def only(term: str, **kwargs) -> EffectLoss:
    return EffectLoss({term: 1.0}, **kwargs)


def test_l1_and_mse_terms_match_numpy(pair):
    y_hat, y = pair
    assert only("l1")(t(y_hat), t(y))[0].item() == pytest.approx(np.abs(y - y_hat).mean(), rel=1e-12)
    assert only("mse")(t(y_hat), t(y))[0].item() == pytest.approx(((y - y_hat) ** 2).mean(), rel=1e-12)


def test_esr_term_matches_hand_computation_and_the_metric(pair):
    y_hat, y = pair
    value = only("esr")(t(y_hat), t(y))[0]
    assert value.item() == pytest.approx(np_esr(y_hat, y), rel=1e-7)  # eps = 1e-8 in the denominator
    assert value.item() == pytest.approx(metrics.esr(t(y_hat), t(y)).item(), rel=1e-12)


def test_esr_term_of_a_stereo_example_is_one_ratio_over_both_channels():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((2, 2, 2048)) * np.array([1.0, 0.01])[None, :, None]
    y_hat = y + 0.01 * rng.standard_normal(y.shape)
    assert only("esr")(t(y_hat), t(y))[0].item() == pytest.approx(np_esr(y_hat, y), rel=1e-7)


def test_dc_term_matches_auraloss_definition_per_channel(pair):
    y_hat, y = pair
    assert only("dc")(t(y_hat), t(y))[0].item() == pytest.approx(np_dc(y_hat, y), rel=1e-6)
    stereo = np.concatenate([y, 2 * y + 0.1], axis=1)
    stereo_hat = np.concatenate([y_hat, 2 * y_hat], axis=1)
    assert only("dc")(t(stereo_hat), t(stereo))[0].item() == pytest.approx(np_dc(stereo_hat, stereo), rel=1e-6)


def test_mrstft_term_is_auraloss_with_the_papers_resolutions(pair):
    y_hat, y = (t(a).float() for a in pair)
    reference = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[1024, 2048, 512], hop_sizes=[120, 240, 50], win_lengths=[600, 1200, 240]
    )
    torch.testing.assert_close(only("mrstft")(y_hat, y)[0], reference(y_hat, y))


def test_mrstft_on_segments_too_short_for_its_fft_is_a_config_error():
    x = torch.randn(1, 1, losses.MRSTFT_MIN_SAMPLES - 1)
    with pytest.raises(ConfigError, match="mrstft.*1025 samples"):
        EffectLoss()(x, x)
    EffectLoss()(torch.randn(1, 1, losses.MRSTFT_MIN_SAMPLES), torch.randn(1, 1, losses.MRSTFT_MIN_SAMPLES))


@pytest.mark.parametrize("filter, b", [("hp", [1.0, -0.85]), ("fd", [1.0, 0.0, -0.85])])
def test_pre_emphasis_is_the_causal_fir_of_scipy_lfilter(pair, filter, b):
    y_hat, y = pair
    emphasis = {"filter": filter, "coef": 0.85}
    f_hat, f = (scipy.signal.lfilter(b, [1.0], a, axis=-1) for a in (y_hat, y))
    _, terms = EffectLoss({"esr": 1.0, "l1": 1.0, "mse": 1.0, "dc": 1.0}, pre_emphasis=emphasis)(t(y_hat), t(y))
    # auraloss' taps are float32 (coef 0.85 -> 0.85000002): agreement to ~1e-7, not 1e-12
    assert terms["esr"].item() == pytest.approx(np_esr(f_hat, f), rel=1e-6)
    assert terms["l1"].item() == pytest.approx(np.abs(f - f_hat).mean(), rel=1e-6)
    assert terms["mse"].item() == pytest.approx(((f - f_hat) ** 2).mean(), rel=1e-6)
    assert terms["dc"].item() == pytest.approx(np_dc(y_hat, y), rel=1e-6)  # dc: unfiltered signals
    filtered_hat, filtered = PreEmphasis(filter, 0.85)(t(y_hat), t(y))
    np.testing.assert_allclose(filtered.numpy(), f, rtol=0, atol=1e-6)  # float32 taps (auraloss')
    assert filtered.shape == y.shape and filtered.dtype == torch.float64


def test_pre_emphasis_aw_is_auraloss_a_weighting_fir_centred():
    x = torch.randn(2, 1, 3000)
    y = torch.randn(2, 1, 3000)
    ours = PreEmphasis("aw", sample_rate=SR)(x, y)
    theirs = auraloss.perceptual.FIRFilter("aw", fs=SR)(x, y)  # a 101-tap kernel, 50 samples of padding
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    taps = auraloss.perceptual.FIRFilter("aw", fs=SR).fir.weight.detach().reshape(-1).double().numpy()
    np.testing.assert_allclose(
        PreEmphasis("aw", sample_rate=SR).filtered(x.double()).numpy()[0, 0], np.convolve(x[0, 0].double(), taps, "same")
    )


def test_pre_emphasis_filters_every_channel_and_passes_gradients():
    y = torch.randn(2, 3, 500, dtype=torch.float64)
    y_hat = torch.zeros_like(y, requires_grad=True)
    filtered_hat, filtered = PreEmphasis("hp", 0.9)(y_hat, y)
    expected = scipy.signal.lfilter([1.0, -0.9], [1.0], y.numpy(), axis=-1)
    np.testing.assert_allclose(filtered.numpy(), expected, atol=1e-6)
    total, _ = EffectLoss({"esr": 1.0}, pre_emphasis={"filter": "hp", "coef": 0.9})(y_hat, y)
    total.backward()
    assert y_hat.grad is not None and torch.isfinite(y_hat.grad).all() and y_hat.grad.abs().sum() > 0


def test_weighted_total_is_the_sum_of_weights_times_terms(pair):
    y_hat, y = (t(a).float() for a in pair)
    weights = {"l1": 0.5, "mse": 2.0, "esr": 0.25, "dc": 3.0, "mrstft": 0.1}
    total, terms = EffectLoss(weights)(y_hat, y)
    assert list(terms) == list(LOSS_TERMS)
    for name in weights:
        torch.testing.assert_close(terms[name], only(name)(y_hat, y)[0])  # unweighted
    torch.testing.assert_close(total, sum(weights[n] * terms[n] for n in weights))


def test_only_terms_with_non_zero_weight_are_computed(pair, monkeypatch):
    y_hat, y = (t(a).float() for a in pair)
    calls: list[str] = []

    def spy(name, fn):
        def wrapped(*args):
            calls.append(name)
            return fn(*args)

        return wrapped

    for name, fn in list(losses._TIME_TERMS.items()):
        monkeypatch.setitem(losses._TIME_TERMS, name, spy(name, fn))
    built = []
    real = losses.mrstft_loss
    monkeypatch.setattr(losses, "mrstft_loss", lambda: built.append(1) or real())

    loss = EffectLoss({"l1": 1.0, "esr": 0.0, "mrstft": 0.0, "dc": 0.5})
    assert loss.mrstft is None and built == []  # not even built
    total, terms = loss(y_hat, y)
    assert sorted(calls) == ["dc", "l1"] and list(terms) == ["l1", "dc"]
    torch.testing.assert_close(total, terms["l1"] + 0.5 * terms["dc"])

    calls.clear()
    loss = EffectLoss({"mrstft": 1.0})
    mrstft_calls = []
    loss.mrstft.register_forward_hook(lambda *_: mrstft_calls.append(1))
    total, terms = loss(y_hat, y)
    assert calls == [] and list(terms) == ["mrstft"] and built == [1] and mrstft_calls == [1]


def test_default_weights_are_the_papers_and_are_not_shared():
    loss = EffectLoss()
    assert loss.weights == {"l1": 1.0, "mrstft": 0.1}
    loss.weights["l1"] = 5.0
    assert EffectLoss().weights == {"l1": 1.0, "mrstft": 0.1}


def test_loss_adds_nothing_to_the_checkpoint():
    loss = EffectLoss({"l1": 1, "esr": 1, "dc": 1, "mrstft": 1}, pre_emphasis={"filter": "aw", "sample_rate": SR})
    assert list(loss.state_dict()) == [] and list(loss.parameters()) == []


@pytest.mark.parametrize(
    "weights, pre_emphasis, message",
    [
        ({"l2": 1.0}, None, r"unknown loss term.*'l2'.*valid terms: l1, mse, esr, dc, mrstft"),
        ({"l1": -1.0}, None, r"l1=-1.0 must be a finite number >= 0"),
        ({"l1": float("nan")}, None, r"l1=nan must be a finite number"),
        ({"l1": "1"}, None, r"l1='1' must be a finite number"),
        ({"l1": True}, None, r"l1=True must be a finite number"),
        ({"l1": 0.0, "mrstft": 0}, None, r"all loss weights are zero.*terms: l1, mse, esr, dc, mrstft"),
        ({}, None, r"all loss weights are zero"),
        ([("l1", 1.0)], None, r"loss weights must be a mapping.*terms: l1, mse"),
        ({"l1": 1.0}, {"filter": "lp"}, r"pre_emphasis filter must be one of \['hp', 'fd', 'aw'\].*'lp'"),
        ({"l1": 1.0}, {"filter": "hp", "coef": 1.5}, r"coef must be a number in \(0, 1\].*1.5"),
        ({"l1": 1.0}, {"filter": "hp", "coef": 0}, r"coef must be a number in \(0, 1\]"),
        ({"l1": 1.0}, {"filter": "aw"}, r"'aw'.*add sample_rate"),
        ({"l1": 1.0}, {"filter": "hp", "gain": 2}, r"unknown pre_emphasis key.*'gain'.*filter, coef, sample_rate"),
        ({"l1": 1.0}, "hp", r"pre_emphasis must be null or a mapping"),
        ({"mrstft": 1.0, "dc": 1.0}, {"filter": "hp"}, r"pre_emphasis applies to the l1/mse/esr terms"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_value(weights, pre_emphasis, message):
    with pytest.raises(ConfigError, match=message):
        EffectLoss(weights, pre_emphasis=pre_emphasis)
