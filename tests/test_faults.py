"""Faults during training: kill -9 and resume, NaN losses, unsafe or broken checkpoints."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from nablafx.cli import main
from nablafx.errors import CheckpointError
from nablafx.models import TCN, GrayBoxChain
from nablafx.training import EffectModule, load_checkpoint
from nablafx.training.checkpoint_io import AtomicCheckpointIO
from nablafx.training.module import TrainingDiverged

from conftest import tanh_pairs_datamodule, write_tanh_pairs

SR = 48000


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    """Two 4 s noise recordings through tanh(3x)."""
    return write_tanh_pairs(tmp_path_factory.mktemp("pairs"), 4)


datamodule = tanh_pairs_datamodule


def trainer(tmp_path, **kwargs):
    options = dict(
        max_steps=6, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, logger=False, limit_val_batches=1, plugins=[AtomicCheckpointIO()],
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/loss", save_last=True)],
    )
    options.update(kwargs)
    return Trainer(**options)


class NaNAtCall(torch.nn.Module):
    """Wraps a loss: returns NaN at the ``at``-th training call (0-based)."""

    def __init__(self, loss, at: int):
        super().__init__()
        self.loss, self.at, self.calls = loss, at, 0
        self.pre_emphasis = loss.pre_emphasis

    def forward(self, y_hat, y):
        total, terms = self.loss(y_hat, y)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls - 1 == self.at:
                return total * float("nan"), terms
        return total, terms


def finite_weights(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values())


def test_nan_loss_stops_the_run_naming_the_step_and_keeps_good_checkpoints(pairs_root, tmp_path):
    module = EffectModule(TCN(channels=4, num_blocks=2, kernel_size=3))
    module.loss = NaNAtCall(module.loss, at=4)
    # validation each epoch (3 batches of 4 x 0.25 s of 3.6 s): last.ckpt is written at step 3
    with pytest.raises(TrainingDiverged, match=r"step 4: the training loss is nan"):
        trainer(tmp_path).fit(module, datamodule(pairs_root))
    checkpoints = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert checkpoints and all(finite_weights(p) for p in checkpoints)
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_nan_loss_can_skip_the_batch_instead(pairs_root, tmp_path):
    module = EffectModule(TCN(channels=4, num_blocks=2, kernel_size=3), on_nonfinite="skip")
    module.loss = NaNAtCall(module.loss, at=2)
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    seen = []

    class Watch(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append({k: v.clone() for k, v in pl_module.net.state_dict().items()})

    fit = trainer(tmp_path, max_steps=5, callbacks=[Watch()], enable_checkpointing=False)
    fit.fit(module, datamodule(pairs_root))
    assert module.skipped_steps == 1
    # the skipped batch (third) left the weights exactly as the second batch did
    assert all(torch.equal(seen[1][k], seen[2][k]) for k in before)
    assert not all(torch.equal(seen[2][k], seen[3][k]) for k in before)
    assert all(torch.isfinite(v).all() for v in module.net.state_dict().values())


def test_nan_gradient_with_a_finite_loss_is_caught(pairs_root, tmp_path):
    net = TCN(channels=4, num_blocks=2, kernel_size=3)
    net.head.weight.register_hook(lambda grad: grad * float("inf"))
    with pytest.raises(TrainingDiverged, match=r"step 0: the training gradient is (inf|nan)"):
        trainer(tmp_path, limit_val_batches=0).fit(EffectModule(net), datamodule(pairs_root))


class NaNInEval(TCN):
    def forward(self, x, knobs=None, state=None):
        y, state = super().forward(x, knobs, state)
        return (y * float("nan") if not self.training else y), state


def test_nan_validation_stops_before_any_best_checkpoint_is_written(pairs_root, tmp_path):
    module = EffectModule(NaNInEval(channels=4, num_blocks=2, kernel_size=3))
    with pytest.raises(TrainingDiverged, match="validation loss is nan"):
        trainer(tmp_path, num_sanity_val_steps=0).fit(module, datamodule(pairs_root))
    assert not list((tmp_path / "ckpt").glob("*.ckpt"))


def test_gray_box_sample_rate_must_match_the_data(pairs_root, tmp_path):
    chain = GrayBoxChain(spec="peq.s+g.s", sample_rate=44100)
    with pytest.raises(ValueError, match=r"data is at 48000 Hz .* built for 44100 Hz.*sample_rate 48000"):
        trainer(tmp_path).fit(EffectModule(chain), datamodule(pairs_root))


# --- checkpoints ------------------------------------------------------------------------------


class Bomb:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_bomb(path: Path, marker: Path) -> None:
    # a checkpoint that looks like ours, with a payload that runs code when unpickled
    torch.save({"nablafx": {"net": {}}, "state_dict": {}, "hyper_parameters": {"x": Bomb(marker)}}, path)


@pytest.mark.parametrize("command", ["fit", "test"])
def test_pickle_bomb_checkpoint_runs_no_code(tmp_path, capsys, command, pairs_root):
    bomb, marker = tmp_path / "bomb.ckpt", tmp_path / "pwned"
    write_bomb(bomb, marker)
    with pytest.raises(pickle.UnpicklingError):  # the file really is a bomb for a plain load
        torch.load(bomb, weights_only=True)
    args = [command, "--data.root", str(pairs_root), "--data.pairs",
            '{"train": [["a.input.wav", "a.target.wav"]], "test": [["b.input.wav", "b.target.wav"]]}',
            "--trainer.logger", "false", "--ckpt_path", str(bomb)]
    if command == "fit":
        args += ["--model.net", "nablafx.models.TCN"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and str(bomb) in err
    assert not marker.exists()
    # Lightning's own load path (resume) goes through the same reader
    with pytest.raises(CheckpointError, match="refused to load"):
        AtomicCheckpointIO().load_checkpoint(bomb, weights_only=False)
    assert not marker.exists()


def test_checkpoint_that_does_not_fit_its_model_is_explained(tmp_path):
    net = TCN(channels=4, num_blocks=2, kernel_size=3)
    module = EffectModule(net)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    meta = {"net": module.hparams["net"], "version": "0.1.0"}
    broken = dict(state)
    broken.pop("net.head.weight")
    broken["net.blocks.0.conv.weight"] = torch.zeros(3, 3, 3)
    broken["net.extra"] = torch.zeros(1)
    torch.save({"nablafx": meta, "state_dict": broken}, tmp_path / "edited.ckpt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "edited.ckpt")
    message = str(error.value)
    assert "1 missing: head.weight" in message and "1 unexpected: extra" in message
    assert "blocks.0.conv.weight (3, 3, 3) vs (4, 1, 3)" in message

    torch.save({"nablafx": meta, "state_dict": state}, tmp_path / "good.ckpt")
    data = (tmp_path / "good.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.ckpt is not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "truncated.ckpt")
    foreign = {"nablafx": {**meta, "net": {"class_path": "nablafx.models.NoSuchNet"}}, "state_dict": state}
    torch.save(foreign, tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(tmp_path / "future.ckpt")


def test_interrupted_checkpoint_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"nablafx": {}, "state_dict": {"w": torch.ones(3)}}, target)
    old = target.read_bytes()

    def dies_half_way(obj, file):
        file.write(b"\x80\x02partial")
        raise KeyboardInterrupt  # stands in for the process being stopped mid-write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"nablafx": {}, "state_dict": {"w": torch.zeros(3)}}, target)
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_gray_box_checkpoint_loads_without_the_pretrained_files(tmp_path, monkeypatch):
    chain = GrayBoxChain(spec="g.s+mlp+fir")
    module = EffectModule(chain)
    state = {f"net.{k}": v for k, v in chain.state_dict().items()}
    torch.save({"nablafx": {"net": module.hparams["net"]}, "state_dict": state}, tmp_path / "gb.ckpt")
    import nablafx.processors.siren as siren

    monkeypatch.setattr(siren, "WEIGHTS_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):  # a new chain does need them ...
        GrayBoxChain(spec="g.s+mlp+fir")
    loaded, _ = load_checkpoint(tmp_path / "gb.ckpt")  # ... a checkpoint does not
    chain.eval()
    x = 0.3 * torch.randn(1, 1, 3000)
    torch.testing.assert_close(loaded(x)[0], chain(x)[0])


# --- kill -9 and resume, through the command ------------------------------------------------


def fit_command(root: Path, run: Path, max_steps: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "nablafx.cli", "fit",
        "--data.root", str(root),
        "--data.pairs", '{"train": [["a.input.wav", "a.target.wav"]], "test": [["b.input.wav", "b.target.wav"]]}',
        "--data.segment_seconds", "0.1", "--data.batch_size", "2",
        "--model.net", "nablafx.models.TCN", "--model.net.init_args.channels", "4",
        "--model.net.init_args.num_blocks", "2",
        "--trainer.max_steps", str(max_steps), "--trainer.accelerator", "cpu", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1",
        "--trainer.default_root_dir", str(run), *extra,
    ]


@pytest.mark.slow
def test_kill_9_during_fit_then_resume_from_last_checkpoint(pairs_root, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # 18 batches an epoch (3.6 s / 0.1 s / 2); validation and checkpoint every epoch
    process = subprocess.Popen(fit_command(pairs_root, run, 100_000), env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = run / "checkpoints"
    deadline = time.monotonic() + 120
    try:
        # kill once at least two checkpoints were written, wherever the run is then
        while time.monotonic() < deadline and process.poll() is None:
            last = checkpoints / "last.ckpt"
            if last.is_file() and torch.load(last, weights_only=True)["global_step"] >= 36:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)  # whole, not truncated
    step = saved["global_step"]
    assert step >= 36 and step % 18 == 0
    assert saved["optimizer_states"][0]["state"], "no optimiser moments saved"

    resumed = subprocess.run(
        fit_command(pairs_root, run, step + 18, "--ckpt_path", str(checkpoints / "last.ckpt")),
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert final["global_step"] == step + 18  # continued from the saved step, not from 0
    assert final["epoch"] == saved["epoch"] + 1
    moments_before = saved["optimizer_states"][0]["state"][0]["step"]
    assert final["optimizer_states"][0]["state"][0]["step"] == moments_before + 18  # AdamW state carried on
    assert "nablafx_plateau" in final
