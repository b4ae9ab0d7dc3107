"""Figures: gray-box chain figures and the stepped-sine response of any model; pretraining command."""

import argparse
import math

import numpy as np
import pytest
import scipy.signal
import torch

from nablafx.commands import pretrain
from nablafx.dsp import biquad_coefficients
from nablafx.models import TCN
from nablafx.models.graybox import GrayBoxChain
from nablafx.plots import model_figures, stepped_sine_response

SR = 48000


def test_stepped_sine_measures_a_known_response():
    chain = GrayBoxChain(spec="g.s+lp.s", overrides={1: {"processor": {"init_args": {"defaults": {"cutoff_hz": 4000, "q": 0.7071}}}}})
    with torch.no_grad():
        chain.stages[0].controller.logits.fill_(math.log(0.575 / 0.425))  # -> +6 dB
    frequencies, gain_db = stepped_sine_response(chain.eval(), SR, num_frequencies=8, levels_db=(-20.0,))
    low = frequencies < 500
    assert gain_db[0, low] == pytest.approx(torch.full_like(gain_db[0, low], 6.0), abs=0.05)
    # Every tone against the RBJ low-pass response from scipy (coefficients checked in test_dsp).
    b, a = biquad_coefficients("lowpass", torch.tensor(4000.0, dtype=torch.float64),
                               torch.tensor(0.7071, dtype=torch.float64), None, SR)
    _, h = scipy.signal.freqz(b.numpy(), a.numpy(), worN=frequencies.numpy(), fs=SR)
    expected = 6 + 20 * np.log10(np.abs(h))
    np.testing.assert_allclose(gain_db[0].numpy(), expected, atol=0.1)


def test_model_figures_for_chains_and_any_model(tmp_path):
    chain = GrayBoxChain(spec="peq.s+g.s+off.d+phinv+mlp+g.s+peq.s+fir+lp.s")
    figures = model_figures(chain, SR)
    assert set(figures) == {"graybox/responses", "graybox/trajectories", "graybox/nonlinearities", "graybox/fir",
                            "graybox/parameters", "response/stepped_sine"}
    assert chain.training  # mode restored
    tcn = TCN(channels=4, num_blocks=2, kernel_size=3)
    tcn_figures = model_figures(tcn, 44100)
    assert set(tcn_figures) == {"response/stepped_sine"}
    for name, figure in {**figures, **tcn_figures}.items():
        path = tmp_path / (name.replace("/", "_") + ".png")
        figure.savefig(path, dpi=50)
        assert path.stat().st_size > 1000


def test_pretrain_command_writes_loadable_weights(tmp_path):
    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    from nablafx.processors import FIRFilter, MLPNonlinearity

    for mode, block in (("nonlinearity", MLPNonlinearity), ("fir", FIRFilter)):
        out = tmp_path / f"{mode}.pt"
        args = parser.parse_args([mode, "--steps", "5", "--out", str(out)])
        assert pretrain.run(args) == 0
        state = torch.load(out, weights_only=True)
        assert out.stat().st_size < 100_000 and out.with_suffix(".png").stat().st_size > 1000
        # the file is the block's SIREN, loadable by name as pretrained weights
        loaded = block(weights=str(out))
        assert set(state) == set(loaded.siren.state_dict())
        assert all(torch.equal(state[k], v) for k, v in loaded.siren.state_dict().items())
    # An impulse response from a file at another sample rate is resampled and normalised.
    import soundfile

    wav = tmp_path / "ir.wav"
    soundfile.write(wav, pretrain.synthetic_cabinet_ir(128, 44100).numpy(), 44100)
    target = pretrain.load_ir(wav, 64, SR)
    assert target.shape == (64,) and torch.fft.rfft(target.double(), n=8192).abs().max() == pytest.approx(1.0)
    out = tmp_path / "from_wav.pt"
    assert pretrain.run(parser.parse_args(["fir", "--ir", str(wav), "--steps", "2", "--out", str(out)])) == 0
    assert FIRFilter(weights=str(out)).taps().shape == (64,)
