"""Training: the LightningModule, losses, metrics, media logging and checkpoint loading."""

from nablafx.training.checkpoint import load_checkpoint
from nablafx.training.media import MediaLogger
from nablafx.training.module import EffectModule

__all__ = ["EffectModule", "MediaLogger", "load_checkpoint"]
