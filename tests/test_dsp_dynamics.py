"""Compressor gain computer and ballistics: static curve, time constants, streaming, gradients."""

import math

import pytest
import torch

from nablafx.dsp.dynamics import compress, gain_computer, smooth_gain, time_constant_coefficient

D = torch.float64
SR = 48000.0


def test_gain_computer_curve():
    level = torch.tensor([-40.0, -20.0, -10.0, 0.0], dtype=D)
    threshold, ratio = torch.tensor(-20.0, dtype=D), torch.tensor(4.0, dtype=D)
    hard = gain_computer(level, threshold, ratio, torch.tensor(0.0, dtype=D))
    torch.testing.assert_close(hard, torch.tensor([0.0, 0.0, -7.5, -15.0], dtype=D))
    soft = gain_computer(level, threshold, ratio, torch.tensor(10.0, dtype=D))
    # Inside the knee: (1/R - 1) (L - T + W/2)^2 / (2W) = -0.75 * 25 / 20 at L = T.
    assert soft[1] == -0.75 * 25 / 20
    assert soft[0] == 0.0 and soft[3] == -15.0


def test_ballistics_follow_attack_and_release_time_constants():
    # -12 dB of reduction for 0.1 s, then none: attack 5 ms (240 samples), release 50 ms (2400).
    reduction = torch.cat([torch.full((1, 4800), -12.0), torch.zeros(1, 4800)], -1).to(D)
    attack = time_constant_coefficient(torch.tensor([[5.0]], dtype=D), SR)
    release = time_constant_coefficient(torch.tensor([[50.0]], dtype=D), SR)
    smoothed, state = smooth_gain(reduction, attack, release)
    # A one-pole covers 1 - 1/e of a step after one time constant.
    assert smoothed[0, 239].item() == pytest.approx(-12 * (1 - math.exp(-1)), rel=1e-9)
    held = smoothed[0, 4799].item()
    assert smoothed[0, 4800 + 2399].item() == pytest.approx(held * math.exp(-1), rel=1e-9)
    assert state.item() == smoothed[0, -1].item()


def test_compressor_streams_and_gradchecks():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 1, 600, dtype=D, generator=g) * torch.linspace(0.01, 1, 600, dtype=D))
    params = dict(threshold_db=torch.tensor([[-20.0]], dtype=D), ratio=torch.tensor([[4.0]], dtype=D),
                  knee_db=torch.tensor([[6.0]], dtype=D), attack_ms=torch.tensor([[1.0]], dtype=D),
                  release_ms=torch.tensor([[20.0]], dtype=D), makeup_db=torch.tensor([[3.0]], dtype=D))
    whole, _ = compress(x, **params, sample_rate=SR)
    parts, state = [], None
    for start in range(0, 600, 41):
        y, state = compress(x[..., start : start + 41], **params, sample_rate=SR, state=state)
        parts.append(y)
    torch.testing.assert_close(torch.cat(parts, -1), whole)

    def f(x, threshold, attack, release):
        return compress(x, threshold, params["ratio"], params["knee_db"], attack, release, params["makeup_db"], SR)[0]

    assert torch.autograd.gradcheck(
        f, (x[:1, :, 300:316].clone().requires_grad_(), params["threshold_db"].clone().requires_grad_(),
            params["attack_ms"].clone().requires_grad_(), params["release_ms"].clone().requires_grad_()))
