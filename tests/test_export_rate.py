"""``nablafx export --sample-rate``: a rate is never just a label. Black-box nets are refused at
another rate than their training rate; gray-box chains are rebuilt at it, keeping their filters'
response in Hz (measured on the artefact, against scipy.signal.sosfreqz of the trained chain)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal
import torch
from export_helpers import SAMPLE_RATE, build, export_cli, save_checkpoint

from nablafx.cli import main
from nablafx.export import ExportMetadata, UnsupportedExport
from nablafx.models import RNN, TCN, GrayBoxChain

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.mark.parametrize("make", [lambda: TCN(channels=4, num_blocks=2), lambda: RNN(hidden_size=8)])
def test_black_box_at_another_rate_is_refused_with_both_rates_and_the_fix(make, tmp_path, capsys):
    checkpoint = save_checkpoint(make().eval(), tmp_path / "m.ckpt")
    out = tmp_path / "out" / "m.pt"
    with pytest.raises(UnsupportedExport) as error:
        export_cli(checkpoint, "--format", "torchscript", "--out", out, "--sample-rate", "44100")
    message = str(error.value)
    assert "--sample-rate 44100" in message and f"trained at {SAMPLE_RATE} Hz" in message
    assert "let the host resample" in message and "retrain at 44100 Hz" in message
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    # the command itself: one line naming both rates, exit status 2, no traceback
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out), "--sample-rate", "44100"]) == 2
    printed = capsys.readouterr().err.strip()
    assert len(printed.splitlines()) == 1 and "trained at 48000 Hz" in printed and "Traceback" not in printed
    # the Python API refuses the same relabelling
    net = make().eval()
    with pytest.raises(UnsupportedExport, match="trained at 48000 Hz"):
        ExportMetadata.describe(net, {"sample_rate": SAMPLE_RATE}, sample_rate=44_100)


@pytest.mark.parametrize("recorded, given", [(SAMPLE_RATE, SAMPLE_RATE), (None, 44_100)])
def test_black_box_rate_is_accepted_when_it_is_the_training_rate_or_unrecorded(recorded, given, tmp_path):
    checkpoint = save_checkpoint(TCN(channels=4, num_blocks=2).eval(), tmp_path / "m.ckpt", sample_rate=recorded)
    out = tmp_path / "m.pt"
    assert export_cli(checkpoint, "--format", "torchscript", "--out", out, "--sample-rate", given) == 0
    assert torch.jit.load(str(out)).sample_rate == given


def eq_chain() -> GrayBoxChain:
    """A five-band EQ away from flat, a gain and the fixed 20 kHz low-pass."""
    torch.manual_seed(0)
    net = GrayBoxChain(spec="peq.s+g.s+lp.s").eval()
    with torch.no_grad():
        for parameter in net.stages[0].controller.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    return net


@torch.no_grad()
def stage_values(stage) -> dict[str, torch.Tensor]:
    """A static stage's parameters in physical units."""
    controls, _ = stage.controls(torch.zeros(1, 1, 1), None, None)
    return stage.processor.denormalize(controls)


@torch.no_grad()
def eq_sos(chain: GrayBoxChain) -> np.ndarray:
    """Second-order sections of the chain's EQ and low-pass (the gain stage left out: it is flat)."""
    sections = []
    for stage in (chain.stages[0], chain.stages[2]):
        b, a = stage.processor.coefficients(stage_values(stage))
        sections.append(np.concatenate([b[0, :, 0].numpy(), a[0, :, 0].numpy()], axis=1))
    return np.concatenate(sections)


def test_graybox_chain_is_rebuilt_at_the_new_rate_keeping_its_response_in_hz(tmp_path, capsys):
    net = eq_chain()
    checkpoint = save_checkpoint(net, tmp_path / "gb.ckpt")
    out = tmp_path / "gb96.pt"
    assert export_cli(checkpoint, "--format", "torchscript", "--out", out, "--sample-rate", "96000") == 0
    assert "rebuilt the gray-box chain at 96000 Hz (trained at 48000 Hz)" in capsys.readouterr().out
    extra = {"nablafx.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    assert module.sample_rate == 96_000
    assert json.loads(extra["nablafx.json"])["net"]["init_args"]["sample_rate"] == 96_000

    impulse = np.zeros(2**15, np.float32)
    impulse[0] = 1.0
    with torch.no_grad():
        response = module.process(torch.from_numpy(impulse)).numpy().astype(np.float64)
    hz = np.geomspace(20, 5000, 300)
    _, measured = scipy.signal.freqz(response, worN=hz, fs=96_000)
    gain = 10 ** (float(stage_values(net.stages[1])["gain_db"]) / 20)
    _, trained = scipy.signal.sosfreqz(eq_sos(net), worN=hz, fs=SAMPLE_RATE)
    db = lambda h: 20 * np.log10(np.abs(h))  # noqa: E731
    # the same curve in Hz; the bilinear designs at 48 and 96 kHz differ only by frequency
    # warping, < 0.08 dB below 5 kHz here (relabelling alone would move every band an octave: 6 dB)
    assert np.abs(db(measured) - db(gain * trained)).max() < 0.1
    assert np.abs(db(trained)).max() > 3  # the EQ is far from flat
    # and it is exactly the chain designed at 96 kHz
    rebuilt = GrayBoxChain(spec="peq.s+g.s+lp.s", sample_rate=96_000).eval()
    rebuilt.load_state_dict(net.state_dict())
    _, designed = scipy.signal.sosfreqz(eq_sos(rebuilt), worN=hz, fs=96_000)
    np.testing.assert_allclose(np.abs(measured), gain * np.abs(designed), rtol=1e-4)


@pytest.mark.parametrize(
    "spec, rate, message",
    [
        ("peq.s+mlp+fir+g.s", 44_100, r"stage 2 \(fir\): its 64 FIR taps are samples"),
        ("g.s+off.d+mlp", 44_100, r"stage 1 \(off.d\): a dynamic controller of 128 samples per control step"),
        # the fixed 20 kHz low-pass is above the Nyquist frequency of 32 kHz
        ("peq.s+g.s+lp.s", 32_000, "does not fit 32000 Hz.*Nyquist"),
    ],
)
def test_graybox_stages_tied_to_samples_are_refused(spec, rate, message, tmp_path):
    checkpoint = save_checkpoint(GrayBoxChain(spec=spec).eval(), tmp_path / "gb.ckpt")
    out = tmp_path / "out" / "gb.pt"
    with pytest.raises(UnsupportedExport, match=message) as error:
        export_cli(checkpoint, "--format", "torchscript", "--out", out, "--sample-rate", rate)
    assert f"trained at {SAMPLE_RATE} Hz" in str(error.value)
    assert not out.parent.exists()


def test_graybox_at_its_training_rate_is_unchanged(tmp_path):
    net = build("graybox-dist")
    checkpoint = save_checkpoint(net, tmp_path / "gb.ckpt")
    out = tmp_path / "gb.pt"
    assert export_cli(checkpoint, "--format", "torchscript", "--out", out, "--sample-rate", SAMPLE_RATE) == 0
    assert torch.jit.load(str(out)).sample_rate == SAMPLE_RATE
