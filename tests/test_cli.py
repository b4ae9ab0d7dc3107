"""End to end through the `nablafx` command: synth -> fit -> test -> process, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from nablafx.cli import main


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "synth"
    assert main(["data", "synth", "--out", str(root), "--seconds", "8", "--test-seconds", "3", "--seed", "1"]) == 0
    return root


def fit_args(root, run_dir, *extra):
    return [
        "fit",
        "--data.root", str(root), "--data.device", "Synth-Overdrive",
        "--data.segment_seconds", "0.25", "--data.test_segment_seconds", "1.0", "--data.batch_size", "4",
        "--model.net", "nablafx.models.TCN",
        "--model.net.init_args.channels", "4", "--model.net.init_args.num_blocks", "3",
        "--trainer.max_steps", "4", "--trainer.limit_train_batches", "2", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(run_dir),
        *extra,
    ]


@pytest.mark.slow
def test_synth_fit_test_process(synth_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default wandb logger writes under ./logs (offline)
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(fit_args(synth_root, tmp_path / "logs")) == 0
    checkpoints = sorted((tmp_path / "logs").rglob("last.ckpt"))
    assert len(checkpoints) == 1
    ckpt = checkpoints[0]
    run = ckpt.parent.parent
    assert list((run / "media").glob("val-step*/00-prediction.wav")), "no audio examples logged"
    assert list((tmp_path / "logs" / "wandb").glob("offline-run-*")), "wandb did not log offline"

    # test needs no model config: the checkpoint holds it
    assert main(["test", "--data.root", str(synth_root), "--data.device", "Synth-Overdrive",
                 "--data.test_segment_seconds", "1.0", "--trainer.logger", "false",
                 "--trainer.enable_progress_bar", "false", "--ckpt_path", str(ckpt)]) == 0
    out = capsys.readouterr().out
    for metric in ("test/esr", "test/l1", "test/mrstft", "test/mse"):
        assert metric in out

    dry = next((synth_root / "DRY" / "test").glob("*.input.wav"))
    one_call, streamed = tmp_path / "one.wav", tmp_path / "streamed.wav"
    assert main(["process", str(ckpt), str(dry), str(one_call)]) == 0
    assert main(["process", str(ckpt), str(dry), str(streamed), "--block-size", "97"]) == 0
    a, rate_a = sf.read(one_call)
    b, rate_b = sf.read(streamed)
    x, rate_x = sf.read(dry)
    assert rate_a == rate_b == rate_x and len(a) == len(b) == len(x)
    assert np.abs(a - b).max() < 1e-5
    # the file holds what the trained network computes on the dry file
    import torch

    from nablafx.training.checkpoint import load_checkpoint

    net, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(x).float().reshape(1, 1, -1))[0].reshape(-1).numpy()
    np.testing.assert_allclose(a, expected, atol=1e-6, rtol=0)
    assert np.abs(expected).max() > 1e-3


def test_process_rejects_bad_knobs_and_missing_checkpoint(tmp_path, capsys):
    from export_helpers import build, save_checkpoint

    out = tmp_path / "out.wav"
    assert main(["process", str(tmp_path / "missing.ckpt"), "in.wav", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    ckpt = save_checkpoint(build("tcn-film-k2"), tmp_path / "model.ckpt")
    sf.write(tmp_path / "dry.wav", np.zeros(100, np.float32), 48_000, subtype="FLOAT")
    for knobs, message in [("0.3,1.5", r"values must lie in [0, 1], got [1.5]"), ("0.3", "2 knob(s)"),
                           (None, "needs --knobs with 2 value(s)")]:
        extra = [] if knobs is None else ["--knobs", knobs]
        assert main(["process", str(ckpt), str(tmp_path / "dry.wav"), str(out), *extra]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name", ["tcn-film-k2", "gru-k2"])
def test_process_block_size_equals_one_call_with_knobs(name, tmp_path, capsys):
    """``--block-size`` streams through StreamingRuntime; stereo channels are independent streams."""
    from export_helpers import build, save_checkpoint

    ckpt = save_checkpoint(build(name), tmp_path / "model.ckpt")
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "dry.wav", (0.3 * rng.standard_normal((1500, 2))).astype(np.float32), 48_000,
             subtype="FLOAT")
    outputs = {}
    for label, extra in [("one", []), ("97", ["--block-size", "97"]), ("1000", ["--block-size", "1000"])]:
        out = tmp_path / f"{label}.wav"
        assert main(["process", str(ckpt), str(tmp_path / "dry.wav"), str(out), "--knobs", "0.3,0.8", *extra]) == 0
        outputs[label], rate = sf.read(out, dtype="float32", always_2d=True)
        assert rate == 48_000 and outputs[label].shape == (1500, 2)
    assert "StreamingRuntime, latency 0 samples" in capsys.readouterr().out
    # one call: each channel is the network on that channel with the given knobs
    import torch

    net = build(name)
    dry, _ = sf.read(tmp_path / "dry.wav", dtype="float32", always_2d=True)
    with torch.no_grad():
        for channel in range(2):
            x = torch.from_numpy(np.ascontiguousarray(dry[:, channel])).reshape(1, 1, -1)
            expected = net(x, torch.tensor([[0.3, 0.8]]))[0].reshape(-1).numpy()
            np.testing.assert_allclose(outputs["one"][:, channel], expected, atol=1e-6, rtol=0)
    assert np.abs(outputs["one"][:, 0] - outputs["one"][:, 1]).max() > 1e-3  # two different streams
    for label in ("97", "1000"):
        np.testing.assert_allclose(outputs[label], outputs["one"], atol=1e-5, rtol=0)


def test_process_knob_parsing():
    from nablafx.commands.process import parse_knobs

    assert parse_knobs("0.3,0.7", ["D", "T"], 2).tolist() == [[pytest.approx(0.3), pytest.approx(0.7)]]
    with pytest.raises(ValueError, match="2 knob"):
        parse_knobs("0.3", ["D", "T"], 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        parse_knobs("0.3,1.5", ["D", "T"], 2)
    with pytest.raises(ValueError, match="takes no knobs"):
        parse_knobs("0.3", [], 0)
    with pytest.raises(ValueError, match="needs --knobs"):
        parse_knobs(None, ["D"], 1)


def test_unknown_config_key_is_rejected(synth_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(synth_root, tmp_path, "--model.no_such_option", "1"))
    assert exit_info.value.code != 0
    assert "no_such_option" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["fit"], ["test"], ["data", "synth"], ["data", "check"], ["process"], ["export"], ["bench"], ["pretrain"]],
)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()
