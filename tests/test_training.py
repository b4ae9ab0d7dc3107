"""The LightningModule: loss, optimiser groups, TBPTT, gradient clipping, checkpoints, media."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from nablafx.core import StreamModule
from nablafx.data.datamodule import EffectDataModule
from nablafx.models import TCN
from nablafx.training import EffectModule, MediaLogger, load_checkpoint
from nablafx.training.metrics import esr
from nablafx.training.module import parameter_groups

from conftest import tanh_pairs_datamodule, write_tanh_pairs

SR = 48000


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    """Two 3 s noise recordings through tanh(3x)."""
    return write_tanh_pairs(tmp_path_factory.mktemp("pairs"), 3)


datamodule = tanh_pairs_datamodule


def trainer(tmp_path, **kwargs):
    options = dict(
        max_steps=4, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, logger=False, limit_val_batches=1,
    )
    options.update(kwargs)
    return Trainer(**options)


def test_esr_is_per_example_and_independent_of_batch_size():
    y = torch.randn(1, 1, 1000)
    y_hat = 0.5 * y  # error energy is exactly a quarter of the signal's
    assert esr(y_hat, y).item() == pytest.approx(0.25, rel=1e-5)
    loud = torch.cat([y, 10 * y])
    assert esr(0.5 * loud, loud).item() == pytest.approx(0.25, rel=1e-5)


def test_optimiser_hints_reach_the_optimiser():
    net = TCN(channels=4, num_blocks=2)
    net.head.weight._optim = {"lr": 1e-3, "weight_decay": 0.0}
    net.head.bias._optim = {"lr_scale": 0.01}
    module = EffectModule(net, lr=5e-3, weight_decay=0.1)
    optimizer = module.configure_optimizers()
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert group_of[id(net.head.weight)]["lr"] == pytest.approx(1e-3)
    assert group_of[id(net.head.weight)]["weight_decay"] == 0.0
    assert group_of[id(net.head.bias)]["lr"] == pytest.approx(5e-5)
    assert group_of[id(net.blocks[0].conv.weight)]["lr"] == pytest.approx(5e-3)
    assert group_of[id(net.blocks[0].conv.weight)]["weight_decay"] == pytest.approx(0.1)
    assert sum(len(g["params"]) for g in parameter_groups(net, 1.0, 0.0)) == len(list(net.parameters()))


def test_gradient_clipping_by_value():
    net = TCN(channels=4, num_blocks=2)
    module = EffectModule(net, grad_clip_value=0.5)
    gradients = {}
    for p in net.parameters():
        g = torch.linspace(-3.0, 3.0, p.numel()).reshape(p.shape)  # mixed signs and sizes
        gradients[p] = g
        p.grad = g.clone()
    module.on_before_optimizer_step(None)
    for p, g in gradients.items():
        # each element clamped alone: small ones unchanged, large ones to +-0.5 (not rescaled)
        torch.testing.assert_close(p.grad, g.clamp(-0.5, 0.5))


class StateSpy(StreamModule):
    """A one-gain model whose state counts samples seen; records the state it is handed."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(0.5))
        self.received: list = []

    def forward(self, x, knobs=None, state=None):
        self.received.append(None if state is None else (float(state), state.requires_grad))
        count = torch.zeros(()) if state is None else state
        return self.gain * x, count + x.shape[-1] * self.gain  # a state that carries gradient


class CountingModule(EffectModule):
    clip_calls = 0

    def on_before_optimizer_step(self, optimizer):
        type(self).clip_calls += 1
        super().on_before_optimizer_step(optimizer)


def test_tbptt_steps_per_chunk_carries_and_detaches_state(pairs_root, tmp_path):
    net = StateSpy()
    chunk, burn_in = 3000, 1200  # 1200 context + 12000-sample segments: burn-in then 4 chunks
    module = CountingModule(net, tbptt_chunk=chunk, context=burn_in, loss={"l1": 1.0})
    CountingModule.clip_calls = 0
    trainer(tmp_path, max_steps=8, limit_val_batches=0).fit(module, datamodule(pairs_root))
    # one optimiser step per chunk: 2 batches x 4 chunks
    assert module.trainer.global_step == 8
    assert CountingModule.clip_calls == 8  # clipping runs before every manual step
    first_batch = net.received[:5]
    assert first_batch[0] is None  # burn-in starts from silence
    assert all(state is not None and not requires_grad for state, requires_grad in first_batch[1:])


def test_checkpoint_round_trip_and_metadata(pairs_root, tmp_path):
    net = TCN(channels=4, num_blocks=2, kernel_size=3)
    module = EffectModule(net)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit = trainer(tmp_path, callbacks=[checkpoint])
    fit.fit(module, datamodule(pairs_root))
    loaded, meta = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert meta["sample_rate"] == SR and meta["num_knobs"] == 0 and meta["receptive_field"] == net.receptive_field
    assert meta["val_esr"] == pytest.approx(float(fit.callback_metrics["val/esr"]))
    x = torch.randn(1, 1, 2000)
    net.eval()
    torch.testing.assert_close(loaded(x)[0], net(x)[0])


def test_missing_or_foreign_checkpoint_gives_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match="not a nablafx checkpoint"):
        load_checkpoint(tmp_path / "foreign.ckpt")


def test_knob_mismatch_between_data_and_model_is_reported(pairs_root, tmp_path):
    root = pairs_root
    data = EffectDataModule(
        root=str(root),
        knobs=["G"],
        pairs={"train": [["a.input.wav", "a.target.wav", {"G": 0.5}]]},
        segment_seconds=0.25,
        batch_size=4,
    )
    with pytest.raises(ValueError, match="num_knobs=0"):
        trainer(tmp_path).fit(EffectModule(TCN(channels=4, num_blocks=2)), data)


@pytest.mark.parametrize("logger_kind", ["none", "csv", "tensorboard"])
def test_media_logging_works_with_any_logger(pairs_root, tmp_path, logger_kind):
    logger = {
        "none": False,
        "csv": CSVLogger(tmp_path / "csv"),
        "tensorboard": TensorBoardLogger(tmp_path / "tb"),
    }[logger_kind]
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "run" / "checkpoints")
    module = EffectModule(TCN(channels=4, num_blocks=2, kernel_size=3))
    fit = trainer(tmp_path, logger=logger, callbacks=[checkpoint, MediaLogger(num_examples=1, model_plots=False)])
    fit.fit(module, datamodule(pairs_root))
    media = sorted((tmp_path / "run" / "media").glob("val-step*"))
    assert media, "no media written"
    files = {p.name for p in media[-1].iterdir()}
    assert {"00-input.wav", "00-target.wav", "00-prediction.wav", "spectrogram-00.png"} <= files
    prediction, rate = sf.read(media[-1] / "00-prediction.wav")
    assert rate == SR and len(prediction) == SR // 4 and np.isfinite(prediction).all()
    if logger_kind == "tensorboard":
        assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_training_converges_on_the_built_in_overdrive(tmp_path):
    """The loss falls: 40 steps of a small TCN on the virtual overdrive at high drive."""
    from lightning.pytorch import Callback

    from nablafx.data.synth.render import render_dataset

    render_dataset(tmp_path / "synth", device="overdrive", knobs={"D": [0.8]}, seconds=6, test_seconds=1, seed=0)
    data = EffectDataModule(root=str(tmp_path / "synth"), device="Synth-Overdrive", segment_seconds=0.25,
                            batch_size=4, val_fraction=0.25)
    history = []

    class Record(Callback):
        def on_validation_end(self, trainer, pl_module):
            history.append(float(trainer.callback_metrics["val/esr"]))

    torch.manual_seed(0)
    module = EffectModule(TCN(channels=8, num_blocks=4, kernel_size=5, dilation_growth=4), lr=5e-3)
    trainer(tmp_path, max_steps=40, limit_val_batches=None, val_check_interval=20, check_val_every_n_epoch=None,
            callbacks=[Record()], num_sanity_val_steps=-1).fit(module, data)
    untrained, final = history[0], history[-1]
    assert len(history) == 3  # sanity check on the untrained model + 2 validations
    # falls at every validation, and ends better than predicting silence (ESR 1)
    assert untrained > history[1] > final and final < 0.8, history


def two_level_datamodule(root, **kwargs):
    """One dry noise file through tanh(3x) at two knob settings whose levels differ by 10x (20 dB)."""
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal(24_000)).astype(np.float32)
    sf.write(root / "dry.wav", x, 48_000, subtype="FLOAT")
    for name, level in (("quiet", 0.1), ("loud", 1.0)):
        sf.write(root / f"{name}.wav", level * np.tanh(3 * x), 48_000, subtype="FLOAT")
    train = [["dry.wav", "quiet.wav", [0.0]], ["dry.wav", "loud.wav", [1.0]]]
    return EffectDataModule(root=str(root), knobs=["G"], pairs={"train": train, "test": train},
                            segment_seconds=0.05, batch_size=2, **kwargs)


def test_balanced_settings_weigh_each_knob_setting_the_same(tmp_path):
    """With balance_settings, a window's loss is its MSE x P / P_setting (hand computation)."""
    data = two_level_datamodule(tmp_path)
    data.setup("fit")
    settings, power = data.train_dataset.target_power_per_setting()
    target = np.tanh(3 * sf.read(tmp_path / "dry.wav", dtype="float32")[0].astype(np.float64))
    region = target[: data.train_dataset.region_samples[0][1]]
    assert settings.tolist() == [[0.0], [1.0]]
    assert power.tolist() == pytest.approx([0.01 * np.mean(region**2), np.mean(region**2)], rel=1e-5)

    # a prediction of silence: every window's MSE is its target power
    module = EffectModule(TCN(num_knobs=1, channels=4, num_blocks=2, conditioning="film"), loss={"mse": 1.0}, balance_settings=True)
    module.setting_power = (settings, power)
    _, y, knobs = data.train_dataset[0]
    quiet, loud = y.unsqueeze(0), 10 * y.unsqueeze(0)  # the same window at both settings
    both = torch.cat([quiet, loud]), torch.tensor([[0.0], [1.0]])
    loss, _ = module.loss(*module._balanced(torch.zeros_like(both[0]), both[0], both[1]))
    mean_power = float(power.mean())
    expected = (float(quiet.pow(2).mean()) * mean_power / float(power[0])
                + float(loud.pow(2).mean()) * mean_power / float(power[1])) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(quiet.pow(2).mean()) * 100 == pytest.approx(float(loud.pow(2).mean()), rel=1e-5)
    # balanced, the two settings' terms are equal; unbalanced the loud one is 100x the quiet one
    terms = [float(module.loss(*module._balanced(torch.zeros_like(s), s, k))[0]) for s, k in
             ((quiet, torch.tensor([[0.0]])), (loud, torch.tensor([[1.0]])))]
    assert terms[0] == pytest.approx(terms[1], rel=1e-5)
    # a setting that is not in the training data keeps scale 1
    unseen = module._balanced(torch.zeros_like(quiet), quiet, torch.tensor([[0.5]]))[1]
    assert torch.equal(unseen, quiet)


def test_balanced_settings_train_and_the_levels_travel_with_the_checkpoint(tmp_path):
    data = two_level_datamodule(tmp_path)
    module = EffectModule(TCN(num_knobs=1, channels=4, num_blocks=2, conditioning="film"), loss={"mse": 1.0}, balance_settings=True)
    fit = trainer(tmp_path, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)])
    fit.fit(module, datamodule=data)
    expected = [t.tolist() for t in data.train_dataset.target_power_per_setting()]
    assert [t.tolist() for t in module.setting_power] == expected
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert checkpoint["nablafx"]["setting_power"] == expected
    restored = EffectModule(TCN(num_knobs=1, channels=4, num_blocks=2, conditioning="film"), loss={"mse": 1.0}, balance_settings=True)
    restored.on_load_checkpoint(checkpoint)
    settings, power = restored.setting_power
    assert settings.tolist() == expected[0] and power.tolist() == pytest.approx(expected[1])
