"""One LightningModule that trains any model of the calling convention.

``EffectModule(net=...)`` wraps a :class:`~nablafx.core.StreamModule` (black-box net or
gray-box chain) with the loss, metrics, optimiser, learning-rate schedule and optional
truncated back-propagation through time (TBPTT). The net's plain-data config is saved
in the checkpoint, so ``process``/``test``/``export`` need nothing but the checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

import nablafx
from nablafx.core import StreamModule, detach_state, to_config
from nablafx.errors import ConfigError, NablaError
from nablafx.training import metrics
from nablafx.training.losses import EffectLoss, mrstft_loss

NONFINITE_POLICIES = ("stop", "skip")
LR_SCHEDULES = ("plateau", "exponential", "cosine", "constant")


def per_setting_table(rows: list[dict]) -> str:
    """The test metrics as a text table, one row per knob setting."""
    lines = [f"{'setting':<28} {'examples':>8} {'ESR':>10} {'L1':>10} {'MSE':>10} {'MR-STFT':>8} {'LUFS diff':>9}"]
    for row in rows:
        lines.append(
            f"{row['setting']:<28} {row['examples']:>8} {row['esr']:>10.5f} {row['l1']:>10.5f} "
            f"{row['mse']:>10.3g} {row['mrstft']:>8.4f} {row['lufs_diff']:>9.2f}"
        )
    return "\n".join(lines)


class TrainingDiverged(NablaError):
    """The loss or the gradients became NaN or inf."""


def parameter_groups(net: torch.nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Group trainable parameters by their optimiser hint.

    A block may set ``param._optim = {"lr": ..., "lr_scale": ..., "weight_decay": ...}``
    (e.g. S4's SSM parameters: own lr, no weight decay; gray-box MLP/FIR: lr x 0.01).
    Parameters without a hint use the module's ``lr`` and ``weight_decay``.
    """
    grouped: dict[tuple, list[torch.nn.Parameter]] = {}
    for param in net.parameters():
        if param.requires_grad:
            hint = getattr(param, "_optim", None) or {}
            grouped.setdefault(tuple(sorted(hint.items())), []).append(param)
    groups = []
    for key, params in grouped.items():
        hint = dict(key)
        groups.append(
            {
                "params": params,
                "lr": hint.get("lr", lr) * hint.get("lr_scale", 1.0),
                "weight_decay": hint.get("weight_decay", weight_decay),
            }
        )
    return groups


class EffectModule(LightningModule):
    """Train, validate, test and predict with any nablafx model.

    Args:
        net: the model (``y, state = net(x, knobs, state)``), e.g. ``nablafx.models.TCN``.
        lr: AdamW learning rate (parameters may carry their own, see ``parameter_groups``).
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        loss: weights of the training loss terms, ``{l1, mse, esr, dc, mrstft}`` (see
            :class:`~nablafx.training.losses.EffectLoss`); default L1 + 0.1 MR-STFT as in the papers.
        pre_emphasis: optional filter before the l1/mse/esr terms, ``{filter: hp|fd|aw, coef: 0.85}``.
        lr_schedule: ``"plateau"`` (ReduceLROnPlateau on the validation loss), ``"exponential"``
            (lr x ``lr_decay`` every 1000 optimiser steps), ``"cosine"`` (to 0 at the trainer's
            ``max_steps``) or ``"constant"``. The per-step schedules depend only on the step
            count, so a resumed run continues them exactly.
        lr_patience: validations without improvement before ReduceLROnPlateau multiplies the lr
            by ``lr_factor``.
        lr_factor: ReduceLROnPlateau factor.
        lr_decay: factor per 1000 steps of the exponential schedule.
        grad_clip_value: clip every gradient element to +-this value before each step (None: off).
        tbptt_chunk: if set, truncated BPTT: each segment is processed in chunks of this many
            samples with one optimiser step per chunk, the state carried and detached between
            chunks (papers: 4800 = 100 ms at 48 kHz). A final chunk shorter than this is skipped.
        context: samples of input history before every scored segment (pre-roll): the loss
            never sees an output sample without its full input context, so a zero-state start
            is no error the model has to learn. None: the model's receptive field minus one,
            or ``burn_in`` for models with unbounded memory (LSTM/GRU, S4, TFiLM family).
            With TBPTT the context runs without gradient before the first chunk.
        burn_in: context of models with unbounded memory, in samples (4800 = 100 ms at 48 kHz).
        balance_settings: weight every knob setting equally in the training and validation
            loss: each window's target and prediction are scaled by
            ``sqrt(P / P_setting)`` first (``P_setting``: the mean target power of that
            setting's training recordings, ``P``: over all of them). Without it a quiet setting
            (an overdrive's low drive, 20 dB below the rest) counts ~100x less under MSE, and
            ends with a 4x worse ESR. Settings absent from the training data keep scale 1.
            The logged ``esr``, ``mse``, ``l1`` and ``mrstft`` metrics stay unscaled.
        on_nonfinite: what a NaN or inf training loss or gradient does: ``"stop"`` ends the run
            with an error naming the step (the last checkpoint stays the last good one);
            ``"skip"`` drops that batch (no optimiser step) and counts it in
            ``train/skipped_steps``. A non-finite validation loss always stops the run, so a
            broken model is never checkpointed as the best.
    """

    def __init__(
        self,
        net: StreamModule,
        lr: float = 5e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        loss: dict[str, float] | None = None,
        pre_emphasis: dict | None = None,
        lr_schedule: str = "plateau",
        lr_patience: int = 20,
        lr_factor: float = 0.5,
        lr_decay: float = 0.5,
        grad_clip_value: float | None = 10.0,
        tbptt_chunk: int | None = None,
        context: int | None = None,
        burn_in: int = 4800,
        on_nonfinite: str = "stop",
        balance_settings: bool = False,
    ):
        super().__init__()
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ConfigError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        if (context is not None and context < 0) or burn_in < 0:
            raise ConfigError(f"context and burn_in must be >= 0 samples, got {context} and {burn_in}")
        if tbptt_chunk is not None and tbptt_chunk < 1:
            raise ConfigError(f"tbptt_chunk must be a positive number of samples or null, got {tbptt_chunk}")
        self.save_hyperparameters(ignore=["net"])
        self.hparams["net"] = to_config(net)  # plain data: checkpoints load with weights_only=True
        self.net = net
        receptive_field = net.receptive_field
        self.context = context if context is not None else (receptive_field - 1 if receptive_field > 0 else burn_in)
        self.loss = EffectLoss(**({"weights": loss} if loss is not None else {}), pre_emphasis=pre_emphasis)
        # Validation and test report MR-STFT even when it is not trained on.
        self._mrstft = None if "mrstft" in self.loss.weights and not balance_settings else mrstft_loss()
        # (settings (S, K), power (S,)) of the training targets, for balance_settings
        self.setting_power: tuple[Tensor, Tensor] | None = None
        # per setting, ESR over all its test audio (not a mean of segment ratios)
        self.per_setting = metrics.PerSettingMetrics(ratios={"esr": ("error_energy", "target_energy")})
        self.automatic_optimization = tbptt_chunk is None
        self.sample_rate: int | None = None
        self.knob_names: list[str] = []
        self.dataset_name: str | None = None
        self.val_esr: float | None = None
        self._plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self.skipped_steps = 0

    # --- set-up ---------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        if not hasattr(datamodule, "set_context"):
            raise ConfigError(
                f"{type(datamodule).__name__} cannot add the model's {self.context}-sample context to its "
                f"windows; use nablafx.data.EffectDataModule"
            )
        datamodule.set_context(self.context)
        if self.hparams.balance_settings and getattr(datamodule, "train_dataset", None) is not None:
            self.setting_power = datamodule.train_dataset.target_power_per_setting()
        self.sample_rate = datamodule.sample_rate
        self.knob_names = list(datamodule.knob_names)
        self.dataset_name = datamodule.dataset_name
        rates = sorted({float(m.sample_rate) for m in self.net.modules() if isinstance(getattr(m, "sample_rate", None), (int, float))})
        if rates and rates != [float(self.sample_rate)]:
            raise ConfigError(
                f"the data is at {self.sample_rate} Hz but the model {type(self.net).__name__} was built for "
                f"{', '.join(f'{r:g}' for r in rates)} Hz (its filters and controls are designed in Hz at that "
                f"rate); set --model.net.init_args.sample_rate {self.sample_rate} or --data.sample_rate "
                f"{rates[0]:g}"
            )
        if datamodule.num_knobs != self.net.num_knobs:
            raise ConfigError(
                f"the data has {datamodule.num_knobs} knob(s) {self.knob_names} but the model "
                f"{type(self.net).__name__} was built with num_knobs={self.net.num_knobs}; set "
                f"--model.net.init_args.num_knobs {datamodule.num_knobs} (and a conditioning method "
                f"that uses knobs) or choose the data's knobs with --data.knobs"
            )

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            parameter_groups(self.net, self.hparams.lr, self.hparams.weight_decay),
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            eps=1e-8,
        )
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        if self.hparams.lr_schedule == "plateau":
            # Stepped by hand on each validation (see on_validation_epoch_end), in both automatic
            # and manual (TBPTT) optimisation, so validation frequency is free to choose.
            self._plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=self.hparams.lr_factor, patience=self.hparams.lr_patience
            )
        return optimizer

    def lr_scale(self, step: int) -> float:
        """Factor on every group's initial lr at optimiser step ``step`` (per-step schedules)."""
        schedule = self.hparams.lr_schedule
        if schedule == "exponential":
            return self.hparams.lr_decay ** (step / 1000)
        if schedule == "cosine":
            horizon = self.trainer.max_steps
            if horizon is None or horizon <= 0:
                raise ConfigError("lr_schedule cosine needs --trainer.max_steps (its horizon); or use exponential")
            return 0.5 * (1 + math.cos(math.pi * min(step, horizon) / horizon))
        return 1.0

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self.hparams.lr_schedule in ("exponential", "cosine"):
            scale = self.lr_scale(self.global_step)
            optimizer = self.optimizers().optimizer
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * scale
            self.log("lr", optimizer.param_groups[0]["lr"])

    # --- steps ----------------------------------------------------------------------------

    def forward(self, x: Tensor, knobs: Tensor | None = None, state=None):
        return self.net(x, knobs, state)

    @staticmethod
    def _knobs(knobs: Tensor) -> Tensor | None:
        return knobs if knobs.numel() > 0 else None

    def _balanced(self, y_hat: Tensor, y: Tensor, knobs: Tensor) -> tuple[Tensor, Tensor]:
        """``y_hat`` and ``y`` scaled so that every knob setting weighs the same (``balance_settings``)."""
        if self.setting_power is None:
            return y_hat, y
        settings, power = (t.to(y.device) for t in self.setting_power)
        # (batch, S): which setting each window is; with no knobs every window matches the one setting
        match = (knobs.reshape(len(y), 1, -1) - settings.unsqueeze(0)).abs().le(1e-6).all(-1)
        per_setting = (power.mean() / power.clamp_min(1e-20)).sqrt()
        scale = torch.where(match.any(-1), (match * per_setting).sum(-1), 1.0)
        scale = scale.to(y.dtype).reshape(-1, *([1] * (y.dim() - 1)))
        return y_hat * scale, y * scale

    def training_step(self, batch, batch_idx):
        x, y, knobs = batch
        if self.hparams.tbptt_chunk is None:
            y_hat = self.net.forward_from(x, self._knobs(knobs), self.context)
            loss, terms = self.loss(*self._balanced(y_hat, *self._scored(y), knobs))
            if not torch.isfinite(loss) and self._nonfinite("loss", loss):
                return None  # Lightning skips the optimiser step
        else:
            loss, terms = self._tbptt_step(x, y, knobs)
        batch_size = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        return loss

    def _tbptt_step(self, x: Tensor, y: Tensor, knobs: Tensor):
        optimizer = self.optimizers()
        chunk, burn_in = self.hparams.tbptt_chunk, self.context
        net_knobs = self._knobs(knobs)
        state = None
        if burn_in > 0:
            with torch.no_grad():
                _, state = self.net(x[..., :burn_in], net_knobs, None)
        totals: dict[str, Tensor] = {}
        steps = 0
        for start in range(burn_in, x.shape[-1] - chunk + 1, chunk):
            y_hat, state = self.net(x[..., start : start + chunk], net_knobs, state)
            loss, terms = self.loss(*self._balanced(y_hat, y[..., start : start + chunk], knobs))
            if not torch.isfinite(loss) and self._nonfinite("loss", loss):
                state = detach_state(state)
                continue
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()  # clipping happens in on_before_optimizer_step
            state = detach_state(state)
            for name, value in {"loss": loss, **terms}.items():
                totals[name] = totals.get(name, 0.0) + value.detach()
            steps += 1
        if steps == 0:
            raise ConfigError(
                f"segments of {x.shape[-1]} samples leave no TBPTT chunk of {chunk} samples after a "
                f"burn-in of {burn_in}; use longer segments (--data.segment_seconds) or a smaller tbptt_chunk"
            )
        means = {name: total / steps for name, total in totals.items()}
        return means.pop("loss"), means

    def _scored(self, *signals: Tensor) -> tuple[Tensor, ...]:
        """The scored segment of each window: everything after the context."""
        return tuple(signal[..., self.context :] for signal in signals)

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        if not grads:  # a skipped batch: nothing to check or clip
            return
        largest = torch.stack([g.abs().max() for g in grads]).max()
        if not torch.isfinite(largest):
            if self._nonfinite("gradient", largest):
                for p in self.net.parameters():
                    p.grad = None  # AdamW leaves parameters without gradients (and their moments) alone
                return
        if self.hparams.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.net.parameters(), self.hparams.grad_clip_value)

    def _nonfinite(self, what: str, value: Tensor) -> bool:
        """Apply ``on_nonfinite`` to a NaN/inf ``what``: True to skip the step, or raise to stop."""
        step = self.global_step
        if self.hparams.on_nonfinite == "skip":
            self.skipped_steps += 1
            self.log("train/skipped_steps", float(self.skipped_steps))
            rank_zero_warn(f"step {step}: training {what} is {float(value)}; skipped this batch")
            return True
        raise TrainingDiverged(
            f"step {step}: the training {what} is {float(value)}, so the run stopped; the last "
            f"checkpoint holds the model before it diverged. Fix: lower --model.lr "
            f"(now {self.hparams.lr:g}), keep --model.grad_clip_value set, check the data with "
            f"`nablafx data check`, or skip such batches with --model.on_nonfinite skip"
        )

    def _evaluate(self, batch, prefix: str) -> dict[str, Tensor]:
        x, y, knobs = batch
        y_hat = self.net.forward_from(x, self._knobs(knobs), self.context)
        x, y = self._scored(x, y)
        loss, terms = self.loss(*self._balanced(y_hat, y, knobs))
        values = {
            "loss": loss,
            "l1": metrics.l1(y_hat, y),
            "esr": metrics.esr(y_hat, y),
            "mse": metrics.mse(y_hat, y),
            "mrstft": terms["mrstft"] if self._mrstft is None else self._mrstft(y_hat, y),
        }
        if self.loss.pre_emphasis is not None:  # the filtered terms differ from the plain metrics
            values.update({f"loss_{name}": value for name, value in terms.items()})
        for name, value in values.items():
            # sync_dist: under DDP the epoch value is the mean over every rank's examples
            self.log(f"{prefix}/{name}", value, prog_bar=name in ("loss", "esr"), batch_size=x.shape[0],
                     sync_dist=True)
        return {"x": x, "y": y, "y_hat": y_hat.detach(), **values}

    def validation_step(self, batch, batch_idx):
        return self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        outputs = self._evaluate(batch, "test")
        y, y_hat = outputs["y"], outputs["y_hat"]
        self.per_setting.update(
            metrics.setting_keys(batch[2], self.knob_names),
            error_energy=(y - y_hat).pow(2).flatten(1).sum(-1),
            target_energy=y.pow(2).flatten(1).sum(-1),
            l1=metrics.l1_per_example(y_hat, y),
            mse=metrics.mse_per_example(y_hat, y),
            mrstft=metrics.mrstft_per_example(y_hat, y),
            lufs_diff=metrics.loudness_difference_lufs_per_example(y_hat, y, self.sample_rate or 48_000),
        )
        return outputs

    def on_test_epoch_start(self) -> None:
        self.per_setting.reset()

    def on_test_epoch_end(self) -> None:
        self.per_setting.sync()  # DDP: every rank holds every rank's examples
        rows = self.per_setting.rows()
        self.log("test/lufs_diff", self.per_setting.overall()["lufs_diff"])
        self.test_table = rows
        if len(rows) > 1:  # parametric data: one row per knob setting
            for row in rows:
                self.log(f"test/setting/{row['setting']}/esr", row["esr"])
        if self.global_rank == 0:
            print(per_setting_table(rows))

    def predict_step(self, batch, batch_idx):
        x, _, knobs = batch
        y_hat, _ = self.net(x, self._knobs(knobs))
        return self._scored(y_hat)[0]

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        metrics_now = self.trainer.callback_metrics
        val_loss = metrics_now.get("val/loss")
        if val_loss is not None and not torch.isfinite(torch.as_tensor(val_loss)):
            # Raised before ModelCheckpoint's validation-end hook, so nothing is saved.
            raise TrainingDiverged(
                f"step {self.global_step}: the validation loss is {float(val_loss)}; the model outputs "
                f"NaN or inf, so the run stopped without saving it. Fix: lower --model.lr "
                f"(now {self.hparams.lr:g}) or check the data with `nablafx data check`"
            )
        if "val/esr" in metrics_now:
            self.val_esr = float(metrics_now["val/esr"])
        if self._plateau is not None and "val/loss" in metrics_now:
            self._plateau.step(float(metrics_now["val/loss"]))
            self.log("lr", self._plateau.optimizer.param_groups[0]["lr"], sync_dist=True)

    # --- checkpoint -----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nablafx"] = {
            "version": nablafx.__version__,
            "net": self.hparams["net"],
            "sample_rate": self.sample_rate,
            "num_knobs": self.net.num_knobs,
            "knob_names": self.knob_names,
            "dataset": self.dataset_name,
            "val_esr": self.val_esr,
            "receptive_field": self.net.receptive_field,
            "latency": self.net.latency,
        }
        if self.setting_power is not None:
            checkpoint["nablafx"]["setting_power"] = [t.tolist() for t in self.setting_power]
        if self._plateau is not None:
            checkpoint["nablafx_plateau"] = self._plateau.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("nablafx", {})
        self.sample_rate = meta.get("sample_rate")
        self.knob_names = list(meta.get("knob_names") or [])
        self.dataset_name = meta.get("dataset")
        self.val_esr = meta.get("val_esr")
        self._plateau_state = checkpoint.get("nablafx_plateau")
        if self.hparams.balance_settings and meta.get("setting_power"):  # test and predict have no training data
            settings, power = meta["setting_power"]
            self.setting_power = (torch.tensor(settings, dtype=torch.float32).reshape(len(power), -1),
                                  torch.tensor(power, dtype=torch.float64))

    def on_fit_start(self) -> None:
        # Resuming: restore the plateau schedule saved with the checkpoint.
        saved = getattr(self, "_plateau_state", None)
        if saved is not None and self._plateau is not None:
            self._plateau.load_state_dict(saved)
