"""Functional DSP core against scipy.signal, analytic properties and finite differences."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from nablafx.dsp import (
    biquad_coefficients,
    biquad_filter,
    denormalize,
    fft_convolve,
    fft_filter,
    fit_rational,
    frequency_sampling_size,
    iir_filter,
    normalize,
    rational,
    rational_frequency_response,
    upsample_controls,
)
from nablafx.dsp.mapping import check_range
from nablafx.dsp.waveshapers import hard_clip, soft_clip

SR = 48000.0
D = torch.float64


def design(kind, cutoff, q, gain=0.0):
    t = lambda v: torch.tensor([float(v)], dtype=D)  # noqa: E731
    b, a = biquad_coefficients(kind, t(cutoff), t(q), t(gain), SR)
    return b[0].numpy(), a[0].numpy()


def gain_db_at(b, a, hz):
    _, h = scipy.signal.freqz(b, a, worN=[hz], fs=SR)
    return 20 * np.log10(np.abs(h[0]))


def test_mapping_scales_round_trip_and_validation():
    u = torch.tensor([0.0, 0.5, 1.0], dtype=D)
    hz = denormalize(u, 20.0, 20000.0, "log")
    assert torch.allclose(hz, torch.tensor([20.0, math.sqrt(20 * 20000), 20000.0], dtype=D))
    assert torch.allclose(denormalize(u, -12.0, 12.0, "linear"), torch.tensor([-12.0, 0.0, 12.0], dtype=D))
    assert torch.allclose(normalize(hz, 20.0, 20000.0, "log"), u)
    with pytest.raises(ValueError, match="smaller than maximum"):
        check_range("gain_db", 3.0, 3.0, "linear")
    with pytest.raises(ValueError, match="positive minimum"):
        check_range("q", 0.0, 1.0, "log")
    with pytest.raises(ValueError, match="valid scales"):
        check_range("q", 0.1, 1.0, "cubic")


@pytest.mark.parametrize("cutoff,q,gain", [(100.0, 0.7, 6.0), (1000.0, 2.0, -9.0), (8000.0, 0.3, 12.0)])
def test_biquad_analytic_properties(cutoff, q, gain):
    nyq = SR / 2 - 1e-6
    b, a = design("lowpass", cutoff, q)
    assert gain_db_at(b, a, 0.0) == pytest.approx(0.0, abs=1e-9)
    assert np.abs(b[0] - b[1] + b[2]) < 1e-12  # zero at Nyquist
    assert gain_db_at(b, a, cutoff) == pytest.approx(20 * math.log10(q), abs=1e-6)  # |H(f0)| = Q
    b, a = design("highpass", cutoff, q)
    assert abs(b.sum()) < 1e-12  # zero at DC
    assert gain_db_at(b, a, nyq) == pytest.approx(0.0, abs=1e-6)
    b, a = design("peaking", cutoff, q, gain)
    assert gain_db_at(b, a, cutoff) == pytest.approx(gain, abs=1e-6)
    assert gain_db_at(b, a, 0.0) == pytest.approx(0.0, abs=1e-9)
    assert gain_db_at(b, a, nyq) == pytest.approx(0.0, abs=1e-6)
    b, a = design("lowshelf", cutoff, q, gain)
    assert gain_db_at(b, a, 0.0) == pytest.approx(gain, abs=1e-9)
    assert gain_db_at(b, a, nyq) == pytest.approx(0.0, abs=1e-6)
    assert gain_db_at(b, a, cutoff) == pytest.approx(gain / 2, abs=1e-6)  # midpoint in dB at the shelf frequency
    b, a = design("highshelf", cutoff, q, gain)
    assert gain_db_at(b, a, 0.0) == pytest.approx(0.0, abs=1e-9)
    assert gain_db_at(b, a, nyq) == pytest.approx(gain, abs=1e-6)
    assert gain_db_at(b, a, cutoff) == pytest.approx(gain / 2, abs=1e-6)


def test_biquad_rejects_unknown_kind_and_missing_gain():
    t = torch.ones(1)
    with pytest.raises(ValueError, match="valid kinds"):
        biquad_coefficients("bandpass", t, t, t, SR)
    with pytest.raises(ValueError, match="needs gain_db"):
        biquad_coefficients("peaking", t, t, None, SR)


@pytest.mark.parametrize("kind", ["lowpass", "highpass", "peaking", "lowshelf", "highshelf"])
def test_response_sampling_matches_freqz(kind):
    b, a = design(kind, 440.0, 1.3, -7.5)
    n_fft = 1024
    ours = rational_frequency_response(torch.from_numpy(b), torch.from_numpy(a), n_fft).numpy()
    _, theirs = scipy.signal.freqz(b, a, worN=np.linspace(0, np.pi, n_fft // 2 + 1))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def random_cascade(batch, time=1, seed=0):
    """Sections of every kind with random parameters, (batch, sections, time, 3)."""
    g = torch.Generator().manual_seed(seed)
    kinds = ["lowshelf", "peaking", "peaking", "highshelf", "lowpass", "highpass"]
    bs, as_ = [], []
    for kind in kinds:
        cutoff = 30 * (600 ** torch.rand(batch, time, generator=g, dtype=D))
        q = 0.2 * (25 ** torch.rand(batch, time, generator=g, dtype=D))
        gain = 24 * torch.rand(batch, time, generator=g, dtype=D) - 12
        b, a = biquad_coefficients(kind, cutoff, q, gain, SR)
        bs.append(b)
        as_.append(a)
    return torch.stack(bs, 1), torch.stack(as_, 1)


def test_recursive_and_frequency_sampling_paths_match_sosfilt():
    x = torch.randn(2, 1, 3000, dtype=D, generator=torch.Generator().manual_seed(1))
    b, a = random_cascade(2)
    y, _ = biquad_filter(x, b, a)
    n_fft = frequency_sampling_size(x.shape[-1])
    response = (rational_frequency_response(b[:, :, 0], a[:, :, 0], n_fft)).prod(1)
    y_fft = fft_filter(x, response, n_fft)
    for i in range(2):
        sos = torch.cat([b[i, :, 0], a[i, :, 0]], -1).numpy()
        reference = scipy.signal.sosfilt(sos, x[i, 0].numpy())
        np.testing.assert_allclose(y[i, 0].numpy(), reference, atol=1e-10)
        np.testing.assert_allclose(y_fft[i, 0].numpy(), reference, atol=1e-8)


def test_frequency_sampling_truncates_the_tail_when_the_fft_is_too_short():
    # A +12 dB low shelf at 30 Hz has a long, large tail: with no padding it wraps around.
    b, a = biquad_coefficients("lowshelf", torch.tensor([[30.0]], dtype=D), torch.tensor([[2.0]], dtype=D),
                               torch.tensor([[12.0]], dtype=D), SR)
    x = torch.zeros(1, 1, 4096, dtype=D)
    x[..., -1] = 1.0  # an impulse at the end: its response wraps to the start
    x[..., 0] = 1.0
    exact, _ = biquad_filter(x, b.unsqueeze(1), a.unsqueeze(1))
    short = fft_filter(x, rational_frequency_response(b[:, 0], a[:, 0], 4096), 4096)
    padded_n = frequency_sampling_size(4096)
    padded = fft_filter(x, rational_frequency_response(b[:, 0], a[:, 0], padded_n), padded_n)
    assert (short - exact).abs().max() > 1e-3
    assert (padded - exact).abs().max() < 1e-9


def test_static_biquad_streaming_equals_one_call_in_float32():
    x = torch.randn(2, 2, 1500, generator=torch.Generator().manual_seed(2))
    b, a = random_cascade(2)
    whole, state = biquad_filter(x, b, a)
    for block in (1, 7, 64, 97):
        parts, s = [], None
        for start in range(0, 1500 if block > 1 else 300, block):
            y, s = biquad_filter(x[..., start : start + block], b, a, s)
            parts.append(y)
        streamed = torch.cat(parts, -1)
        torch.testing.assert_close(streamed, whole[..., : streamed.shape[-1]], atol=1e-5, rtol=1e-5)


def reference_time_varying_df1(x, b, a):
    """Per-sample direct form I in numpy, one section: b, a (time, 3)."""
    y = np.zeros_like(x)
    for n in range(len(x)):
        acc = sum(b[n, m] * x[n - m] for m in range(3) if n - m >= 0)
        acc -= sum(a[n, k] * y[n - k] for k in (1, 2) if n - k >= 0)
        y[n] = acc
    return y


def test_time_varying_biquad_matches_per_sample_reference_and_streams():
    length = 400
    t = torch.linspace(0, 1, length, dtype=D)
    cutoff = (200 * 40**t).view(1, length)  # a sweep from 200 Hz to 8 kHz
    q = torch.full_like(cutoff, 2.0)
    b, a = biquad_coefficients("lowpass", cutoff, q, None, SR)
    b, a = b.unsqueeze(1), a.unsqueeze(1)
    x = torch.randn(1, 1, length, dtype=D, generator=torch.Generator().manual_seed(3))
    y, _ = biquad_filter(x, b, a)
    np.testing.assert_allclose(y[0, 0].numpy(), reference_time_varying_df1(x[0, 0].numpy(), b[0, 0].numpy(), a[0, 0].numpy()), atol=1e-12)
    parts, state = [], None
    for start in range(0, length, 37):
        stop = min(start + 37, length)
        part, state = biquad_filter(x[..., start:stop], b[:, :, start:stop], a[:, :, start:stop], state)
        parts.append(part)
    torch.testing.assert_close(torch.cat(parts, -1), y)
    # Constant time-varying coefficients equal the static path.
    b_static, a_static = random_cascade(1)
    static, _ = biquad_filter(x, b_static, a_static)
    varying, _ = biquad_filter(x, b_static.expand(-1, -1, length, -1), a_static.expand(-1, -1, length, -1))
    torch.testing.assert_close(static, varying)


@pytest.mark.parametrize("time_b,time_a", [(1, 1), (6, 6), (1, 6)])
def test_iir_filter_gradcheck(time_b, time_a):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 6, dtype=D, generator=g, requires_grad=True)
    b = torch.randn(2, 3, time_b, dtype=D, generator=g, requires_grad=True)
    a = (0.4 * torch.randn(2, 2, time_a, dtype=D, generator=g)).requires_grad_()
    x_init = torch.randn(2, 2, dtype=D, generator=g, requires_grad=True)
    y_init = torch.randn(2, 2, dtype=D, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(iir_filter, (x, b, a, x_init, y_init))


def test_biquad_design_and_filter_gradcheck():
    def f(cutoff, q, gain, x):
        b, a = biquad_coefficients("peaking", cutoff, q, gain, SR)
        return biquad_filter(x, b.unsqueeze(1), a.unsqueeze(1))[0]

    g = torch.Generator().manual_seed(5)
    args = (
        torch.tensor([[300.0], [2000.0]], dtype=D, requires_grad=True),
        torch.tensor([[0.8], [3.0]], dtype=D, requires_grad=True),
        torch.tensor([[4.0], [-6.0]], dtype=D, requires_grad=True),
        torch.randn(2, 1, 8, dtype=D, generator=g, requires_grad=True),
    )
    assert torch.autograd.gradcheck(f, args)


def test_fft_convolve_matches_numpy_and_streams():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 1, 500, dtype=D, generator=g)
    taps = torch.randn(64, dtype=D, generator=g)
    y, _ = fft_convolve(x, taps)
    np.testing.assert_allclose(y[0, 0].numpy(), np.convolve(x[0, 0].numpy(), taps.numpy())[:500], atol=1e-10)
    parts, state = [], None
    for start in range(0, 500, 23):
        part, state = fft_convolve(x[..., start : start + 23], taps, state)
        parts.append(part)
    torch.testing.assert_close(torch.cat(parts, -1), y)
    assert torch.autograd.gradcheck(lambda x, t: fft_convolve(x, t)[0], (x[:1, :, :10].requires_grad_(), taps[:4].clone().requires_grad_()))


def test_control_interpolation_is_causal():
    previous = torch.tensor([[[0.0, 1.0]]])
    current = torch.tensor([[[1.0, 3.0]]])
    linear = upsample_controls(previous, current, 4, "linear")
    torch.testing.assert_close(linear, torch.tensor([[[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0]]]))
    hold = upsample_controls(previous, current, 2, "hold")
    torch.testing.assert_close(hold, torch.tensor([[[1.0, 1.0, 3.0, 3.0]]]))
    with pytest.raises(ValueError, match="valid"):
        upsample_controls(previous, current, 2, "cubic")


def test_waveshapers():
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], dtype=D)
    torch.testing.assert_close(hard_clip(x), torch.tensor([-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0], dtype=D))
    torch.testing.assert_close(soft_clip(x), torch.tensor([-1.0, -1.0, -0.6875, 0.0, 0.6875, 1.0, 1.0], dtype=D))
    numerator, denominator = fit_rational(torch.tanh, 6, 5, 4.0)
    grid = torch.linspace(-4, 4, 1001, dtype=D)
    assert (rational(grid, numerator, denominator) - grid.tanh()).abs().max() < 1e-4
    probe = torch.tensor([-2.3, -0.4, 0.7, 1.9], dtype=D, requires_grad=True)
    for shaper in (hard_clip, soft_clip, torch.tanh):
        assert torch.autograd.gradcheck(shaper, (probe,))
    # The tanh fit has odd denominator terms of ~1e-9, at the kink of |b_k x^k|: move them off it.
    denominator = denominator + 0.1
    assert torch.autograd.gradcheck(rational, (probe, numerator.clone().requires_grad_(), denominator.requires_grad_()))
