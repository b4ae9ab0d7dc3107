"""Training windows: receptive-field pre-roll excluded from the loss, random positions per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch import Trainer

from nablafx.core import StreamModule
from nablafx.data.datamodule import EffectDataModule
from nablafx.data.dataset import RandomWindowSampler, SegmentDataset
from nablafx.models import RNN, TCN
from nablafx.training import EffectModule

SR = 48000


@pytest.fixture(scope="module")
def ramp_pair(tmp_path_factory):
    """Input sample n holds n / SR (so a window tells where it was cut); target = 0.5 * input."""
    root = tmp_path_factory.mktemp("ramp")
    x = (np.arange(2 * SR) / SR).astype(np.float32) * 0.4 + 0.01
    sf.write(root / "in.wav", x, SR, subtype="FLOAT")
    sf.write(root / "out.wav", 0.5 * x, SR, subtype="FLOAT")
    return root


def test_a_window_is_context_then_segment_with_zeros_before_the_file(ramp_pair):
    dataset = SegmentDataset([(ramp_pair / "in.wav", ramp_pair / "out.wav")], SR, segment_length=1000)
    audio, _ = sf.read(ramp_pair / "in.wav", dtype="float32")
    dataset.context = 300
    x, y, _ = dataset[(0, 5000)]
    np.testing.assert_array_equal(x[0].numpy(), audio[4700:6000])
    np.testing.assert_array_equal(y[0].numpy(), 0.5 * audio[4700:6000])
    x, _, _ = dataset[(0, 100)]  # 200 samples of context lie before the file: silence
    assert x.shape == (1, 1300)
    assert not x[0, :200].any() and np.array_equal(x[0, 200:].numpy(), audio[:1100])


class PoisonedStart(StreamModule):
    """Gain 0.5 with a receptive field of ``context + 1``: outputs NaN where it lacks history."""

    def __init__(self, context: int = 500):
        super().__init__()
        self.context = context
        self.gain = torch.nn.Parameter(torch.tensor(0.3))

    @property
    def receptive_field(self) -> int:
        return self.context + 1

    def forward(self, x, knobs=None, state=None):
        y = self.gain * x
        return torch.cat([torch.full_like(y[..., : self.context], float("nan")), y[..., self.context :]], -1), None


def test_the_loss_never_sees_the_context(ramp_pair, tmp_path):
    data = EffectDataModule(root=str(ramp_pair), pairs={"train": [["in.wav", "out.wav"]]},
                            segment_seconds=0.05, batch_size=4, val_fraction=0.2)
    module = EffectModule(PoisonedStart(500), lr=1e-2)
    assert module.context == 500
    trainer = Trainer(max_steps=20, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, data)  # a NaN that reached the loss would stop the run (on_nonfinite=stop)
    assert data.train_dataset.context == data.val_dataset.context == 500
    assert np.isfinite(float(trainer.callback_metrics["val/loss"]))
    assert abs(module.net.gain.item() - 0.5) < abs(0.3 - 0.5)  # and it learned from the scored part


def test_context_follows_the_model():
    tcn = TCN(channels=4, num_blocks=3, kernel_size=5, dilation_growth=2)
    assert EffectModule(tcn).context == tcn.receptive_field - 1 == 4 * (1 + 2 + 4)
    assert EffectModule(RNN(hidden_size=8)).context == 4800  # unbounded memory: the burn-in
    assert EffectModule(RNN(hidden_size=8), burn_in=960).context == 960
    assert EffectModule(tcn, context=0).context == 0


def test_random_windows_differ_per_epoch_and_repeat_with_the_seed(ramp_pair):
    dataset = SegmentDataset([(ramp_pair / "in.wav", ramp_pair / "out.wav")], SR, segment_length=1000,
                             region=(0.0, 0.9))
    first, last = dataset.region_samples[0]
    assert (first, last) == (0, round(0.9 * 2 * SR))

    def positions(seed, epoch):
        sampler = RandomWindowSampler(dataset, 50, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    epoch0, epoch1 = positions(0, 0), positions(0, 1)
    assert epoch0 == positions(0, 0) and epoch1 == positions(0, 1)  # reproducible
    assert epoch0 != epoch1 and epoch0 != positions(1, 0)  # fresh each epoch and seed
    starts = [start for _, start in epoch0 + epoch1]
    assert all(first <= start <= last - 1000 for start in starts)  # inside the training region
    assert len(set(starts)) > 90  # not a fixed grid of 172 hop positions revisited
    assert any(start % 1000 for start in starts)


def test_the_data_module_feeds_random_windows_through_lightning(ramp_pair):
    data = EffectDataModule(root=str(ramp_pair), pairs={"train": [["in.wav", "out.wav"]]},
                            segment_seconds=0.1, batch_size=4, windows_per_epoch=8, seed=3)
    data.setup("fit")
    data.set_context(100)
    loader = data.train_dataloader()
    assert len(loader) == 2 and isinstance(loader.sampler, RandomWindowSampler)
    x, y, _ = next(iter(loader))
    assert x.shape == (4, 1, 100 + 4800)
    torch.testing.assert_close(y, 0.5 * x)
