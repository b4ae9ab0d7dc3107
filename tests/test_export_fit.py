"""Export what ``nablafx fit`` itself wrote (not a hand-made checkpoint): TorchScript and ONNX
artefacts reproduce the checkpoint's model, as load_checkpoint rebuilds it, on a dry file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from test_cli import fit_args, synth_root  # noqa: F401  (the tiny synthetic dataset fixture)

from nablafx.cli import main
from nablafx.export.onnx_export import OnnxStreamer
from nablafx.training.checkpoint import load_checkpoint


@pytest.mark.slow
def test_checkpoint_written_by_fit_exports_to_torchscript_and_onnx(synth_root, tmp_path, capsys):  # noqa: F811
    assert main(fit_args(synth_root, tmp_path / "logs", "--trainer.logger", "false", "--trainer.max_steps", "2")) == 0
    [checkpoint] = sorted((tmp_path / "logs").rglob("last.ckpt"))
    net, meta = load_checkpoint(checkpoint)
    assert meta["sample_rate"] == 48_000 and isinstance(meta["val_esr"], float)

    dry = next((synth_root / "DRY" / "test").glob("*.input.wav"))
    x, rate = sf.read(dry, dtype="float32")
    x = x[: rate // 2]  # half a second of the held-out dry signal
    with torch.no_grad():
        expected = net(torch.from_numpy(x).reshape(1, 1, -1))[0].reshape(-1).numpy()
    assert np.abs(expected).max() > 1e-3  # the trained net does something

    scripted, onnx_file = tmp_path / "model.pt", tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "--format", "torchscript", "--out", str(scripted)]) == 0
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(onnx_file)]) == 0
    assert capsys.readouterr().out.count("wrote ") == 2

    module = torch.jit.load(str(scripted))
    recorded = json.loads(module.metadata)
    assert recorded["val_esr"] == meta["val_esr"] and recorded["dataset"] == meta["dataset"]
    assert recorded["net"] == meta["net"] and module.sample_rate == 48_000
    with torch.no_grad():
        from_torchscript = np.concatenate([module.process(torch.from_numpy(b)).numpy()
                                           for b in np.array_split(x, 93)])  # ~258-sample host buffers
    streamer = OnnxStreamer(onnx_file)
    from_onnx = np.concatenate([streamer.process(b) for b in np.array_split(x, 51)])
    np.testing.assert_allclose(from_torchscript, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(from_onnx, expected, atol=1e-5, rtol=0)
