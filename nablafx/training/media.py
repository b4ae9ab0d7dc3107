"""Audio examples and figures during validation/test, for any Lightning logger (or none).

Files always go to the run folder (``<run>/media/<stage>-step<N>/``); loggers that can
show media also get them: wandb (audio + images) and TensorBoard (audio + figures).
Other loggers (CSV, ...) just see the files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger  # noqa: E402


def run_dir(trainer: Trainer) -> Path:
    """The folder of this run: where checkpoints go, else the logger's, else the root dir."""
    callback = trainer.checkpoint_callback
    if callback is not None and getattr(callback, "dirpath", None):
        return Path(callback.dirpath).parent
    if trainer.log_dir:
        return Path(trainer.log_dir)
    return Path(trainer.default_root_dir)


def spectrogram_figure(signals: dict[str, np.ndarray], sample_rate: int) -> plt.Figure:
    """Log-magnitude spectrograms on one colour scale (dB re full scale), plus the error."""
    panels = dict(signals)
    if "target" in panels and "prediction" in panels:
        panels["error (target - prediction)"] = panels["target"] - panels["prediction"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels)), sharex=True, squeeze=False)
    n_fft = 2048
    for ax, (name, audio) in zip(axes[:, 0], panels.items()):
        freqs, times, spectrum = scipy.signal.stft(
            audio, fs=sample_rate, nperseg=n_fft, noverlap=n_fft * 3 // 4, boundary=None, padded=True
        )
        # |X| of a full-scale sine is 1/2 with scipy's scaling; the floor keeps silence finite.
        level_db = 20 * np.log10(2 * np.abs(spectrum) + 1e-10)
        image = ax.pcolormesh(times, freqs[1:], level_db[1:], vmin=-120, vmax=0, cmap="magma", shading="auto")
        ax.set_yscale("log")
        ax.set_ylim(20, sample_rate / 2)
        ax.set_ylabel("Hz")
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="dB", fraction=0.02)
    axes[-1, 0].set_xlabel("time (s)")
    return fig


def _model_figures(pl_module: LightningModule, x, knobs, sample_rate: int) -> dict[str, plt.Figure]:
    """Figures the model knows how to draw of itself (gray-box blocks, responses)."""
    try:
        from nablafx.plots import model_figures
    except ImportError:
        return {}
    return model_figures(pl_module.net, sample_rate, x=x, knobs=knobs)


class MediaLogger(Callback):
    """Log input/target/prediction audio and a spectrogram comparison at each validation and test.

    Args:
        num_examples: how many examples of the first batch to log.
        every_n_validations: log at every n-th validation run (the first is always logged).
        model_plots: also log the model's own figures (responses, gray-box blocks).
    """

    def __init__(self, num_examples: int = 2, every_n_validations: int = 1, model_plots: bool = True):
        self.num_examples = num_examples
        self.every_n_validations = max(1, every_n_validations)
        self.model_plots = model_plots
        self._validations = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx != 0 or trainer.sanity_checking:
            return
        self._validations += 1
        if (self._validations - 1) % self.every_n_validations == 0:
            self._log(trainer, pl_module, outputs, batch, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self._log(trainer, pl_module, outputs, batch, "test")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        folder = run_dir(trainer) / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        sample_rate = pl_module.sample_rate or 48000
        # Under DDP every rank predicts its own share of the files, numbering its batches from 0.
        rank = f"rank{trainer.global_rank}-" if trainer.world_size > 1 else ""
        for i, audio in enumerate(outputs.detach().cpu().float().numpy()):
            sf.write(folder / f"{rank}batch{batch_idx:04d}-{i:02d}.wav", audio[0], sample_rate, subtype="FLOAT")

    @torch.no_grad()
    def _log(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, stage: str) -> None:
        if trainer.global_rank != 0 or not isinstance(outputs, dict) or "y_hat" not in outputs:
            return
        sample_rate = pl_module.sample_rate or 48000
        _, _, knobs = batch
        x, y = outputs["x"], outputs["y"]  # the scored segments, without the context before them
        n = min(self.num_examples, x.shape[0])
        step = trainer.global_step
        folder = run_dir(trainer) / "media" / f"{stage}-step{step:07d}"
        folder.mkdir(parents=True, exist_ok=True)

        audio: dict[str, list[np.ndarray]] = {"input": [], "target": [], "prediction": []}
        figures: dict[str, plt.Figure] = {}
        for i in range(n):
            signals = {
                "input": x[i, 0].cpu().float().numpy(),
                "target": y[i, 0].cpu().float().numpy(),
                "prediction": outputs["y_hat"][i, 0].cpu().float().numpy(),
            }
            for name, signal in signals.items():
                audio[name].append(signal)
                sf.write(folder / f"{i:02d}-{name}.wav", signal, sample_rate, subtype="FLOAT")
            figures[f"spectrogram-{i:02d}"] = spectrogram_figure(signals, sample_rate)
        if self.model_plots:
            example_knobs = knobs[:1] if knobs.numel() > 0 else None
            figures.update(_model_figures(pl_module, x[:1], example_knobs, sample_rate))
        for name, fig in figures.items():
            path = folder / f"{name}.png"  # names may hold folders, e.g. "blocks/peq"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for name, clips in audio.items():
                    logger.log_audio(
                        f"{stage}/audio/{name}", audios=clips, step=step,
                        sample_rate=[sample_rate] * len(clips), caption=[f"example {i}" for i in range(len(clips))],
                    )
                for name, fig in figures.items():  # one key each: wandb wants equal sizes per key
                    logger.log_image(f"{stage}/{name}", images=[fig], step=step)
            elif isinstance(logger, TensorBoardLogger):
                for name, clips in audio.items():
                    for i, clip in enumerate(clips):
                        logger.experiment.add_audio(
                            f"{stage}/{name}/{i}", torch.from_numpy(clip)[None], step, sample_rate=sample_rate
                        )
                for name, fig in figures.items():
                    logger.experiment.add_figure(f"{stage}/{name}", fig, step, close=False)
        for fig in figures.values():
            plt.close(fig)
