"""Audio loading, datasets, the Lightning data module and data checks.

:class:`EffectDataModule` is imported on first use: it pulls in Lightning (seconds),
which ``nablafx data check`` and the synthetic dataset renderer do not need.
``nablafx.data.synth`` (the built-in synthetic dataset) is likewise imported only when used.
"""

from nablafx.data.audio import load_audio
from nablafx.data.checks import Report, check_dataset
from nablafx.data.dataset import SegmentDataset
from nablafx.data.errors import DataError
from nablafx.data.tonetwist import Pair, find_pairs, parse_setting, split_setting

__all__ = [
    "DataError",
    "EffectDataModule",
    "Pair",
    "Report",
    "SegmentDataset",
    "check_dataset",
    "find_pairs",
    "load_audio",
    "parse_setting",
    "split_setting",
]


def __getattr__(name: str):
    if name == "EffectDataModule":
        from nablafx.data.datamodule import EffectDataModule

        return EffectDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
