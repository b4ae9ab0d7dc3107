"""LightningCLI set up for nablafx: one module class, one data module, sensible defaults.

Defaults: wandb in offline mode under ``logs/`` (no account, no network), checkpoints
``last.ckpt`` and the best by validation loss (written atomically, read without unpickling
code; options under ``checkpoint:``), and media logging (options under ``media:``). Any of these can be
replaced in a trainer YAML or on the command line (``--trainer.logger false``).
"""

from __future__ import annotations

import sys
import warnings

import yaml
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from jsonargparse import lazy_instance
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import WandbLogger

from nablafx.data.datamodule import EffectDataModule
from nablafx.training.media import MediaLogger
from nablafx.training.checkpoint import read_checkpoint
from nablafx.training.checkpoint_io import AtomicCheckpointIO
from nablafx.training.module import EffectModule


def _ckpt_path(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--ckpt_path" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--ckpt_path="):
            return arg.split("=", 1)[1]
    return None


def with_net_from_checkpoint(args: list[str]) -> list[str]:
    """Check ``--ckpt_path`` and let ``validate/test/predict --ckpt_path X`` run without a model config.

    Every subcommand's checkpoint is read here first with ``weights_only=True``, so a missing,
    truncated or code-carrying file stops with a clear message before Lightning opens it.
    The checkpoint holds the net's config; it is given to the parser as the first config,
    so model files or ``--model.*`` options on the command line still override it.
    """
    ckpt_path = _ckpt_path(args)
    if not args or ckpt_path is None:
        return args
    checkpoint = read_checkpoint(ckpt_path)
    net = checkpoint.get("hyper_parameters", {}).get("net")
    if args[0] == "fit" or net is None:
        return args
    return [args[0], "--config", yaml.safe_dump({"model": {"net": net}}), *args[1:]]


class NablaCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None):
        args = with_net_from_checkpoint(list(sys.argv[1:] if args is None else args))
        # We always pass args explicitly (possibly rewritten), which LightningCLI warns about.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        super().__init__(
            EffectModule,
            EffectDataModule,
            trainer_defaults={
                "default_root_dir": "logs",
                "logger": lazy_instance(WandbLogger, project="nablafx", save_dir="logs", offline=True),
            },
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            args=args,
        )

    def add_arguments_to_parser(self, parser) -> None:
        # Configurable from YAML as top-level `checkpoint:` and `media:` (a trainer_defaults
        # callback would be added on top of any the config lists, with its arguments fixed).
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/loss",
            "checkpoint.mode": "min",
            "checkpoint.save_last": True,
            "checkpoint.filename": "best-step{step:07d}",
            "checkpoint.auto_insert_metric_name": False,
        })
        parser.add_lightning_class_args(MediaLogger, "media")

    def instantiate_trainer(self, **kwargs):
        # Added here rather than in trainer_defaults: jsonargparse cannot write a plugin
        # object into the saved config.yaml. A user's own CheckpointIO plugin wins.
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer
