"""What every export records about the model: family and config, rates, knobs, data, quality, latency."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

import nablafx
from nablafx.core import to_config
from nablafx.export.errors import UnsupportedExport
from nablafx.export.families import model_family
from nablafx.export.rate import refusal, trained_rate
from nablafx.models import GrayBoxChain
from nablafx.errors import ConfigError


#: Longest default model name: Neutone's limit, and short enough for any plugin's menu.
DEFAULT_NAME_LENGTH = 30


def default_name(dataset: str | None, family: str) -> str:
    """``<dataset>-<family>``, the dataset part cut so the whole fits :data:`DEFAULT_NAME_LENGTH`
    (data names carry their settings, e.g. ``Synth-Overdrive-D060_T050_L050``)."""
    if not dataset:
        return family
    return f"{dataset[: max(DEFAULT_NAME_LENGTH - len(family) - 1, 1)]}-{family}"


@dataclass
class ExportMetadata:
    """Plain-data description written into (or next to) every exported artefact.

    Knob values are normalised to [0, 1] everywhere in nablafx, so every range is [0, 1];
    ``knob_names`` are the data's knob names in the model's input order.
    """

    family: str
    net: dict
    sample_rate: int | None
    knob_names: list[str]
    knob_ranges: list[list[float]]
    dataset: str | None
    val_esr: float | None
    latency: int
    receptive_field: int
    nablafx_version: str
    date: str
    name: str
    author: str | None = None
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def describe(cls, net: nn.Module, checkpoint_meta: dict | None = None, *, sample_rate: int | None = None,
                 name: str | None = None, author: str | None = None, description: str | None = None,
                 now: _dt.datetime | None = None) -> "ExportMetadata":
        """Collect the metadata of ``net`` from its checkpoint's ``nablafx`` dict and CLI options.

        ``sample_rate`` states the rate when the checkpoint records none; otherwise it must be the
        rate the model runs at (the checkpoint's, or that of a gray-box chain rebuilt with
        :func:`nablafx.export.rate.at_sample_rate`): a label alone does not change the model.
        Knob names default to ``knob1``, ``knob2``, ...
        """
        meta = dict(checkpoint_meta or {})
        num_knobs = net.num_knobs
        knob_names = list(meta.get("knob_names") or [f"knob{i + 1}" for i in range(num_knobs)])
        if len(knob_names) != num_knobs:
            raise ConfigError(
                f"the checkpoint names {len(knob_names)} knob(s) {knob_names} but the model takes {num_knobs}"
            )
        rate = trained_rate(net, meta.get("sample_rate"))
        if sample_rate is not None and rate is not None and int(sample_rate) != rate:
            if not isinstance(net, GrayBoxChain):
                raise UnsupportedExport(refusal(net, rate, int(sample_rate)))
            if int(net.sample_rate) != int(sample_rate):
                raise UnsupportedExport(refusal(net, rate, int(sample_rate), (
                    f"the chain is built at {net.sample_rate:g} Hz; rebuild it at the new rate with "
                    "nablafx.export.rate.at_sample_rate (as `nablafx export --sample-rate` does)")))
        if sample_rate is not None:
            rate = sample_rate
        family = model_family(net)
        dataset = meta.get("dataset")
        now = now or _dt.datetime.now().astimezone()
        return cls(
            family=family,
            net=to_config(net),
            sample_rate=int(rate) if rate is not None else None,
            knob_names=knob_names,
            knob_ranges=[[0.0, 1.0] for _ in knob_names],
            dataset=dataset,
            val_esr=None if meta.get("val_esr") is None else float(meta["val_esr"]),
            latency=int(net.latency),
            receptive_field=int(net.receptive_field),
            nablafx_version=nablafx.__version__,
            date=now.isoformat(timespec="seconds"),
            name=name or default_name(dataset, family),
            author=author,
            description=description,
        )

    @property
    def num_knobs(self) -> int:
        return len(self.knob_names)

    @property
    def datetime(self) -> _dt.datetime:
        return _dt.datetime.fromisoformat(self.date)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["extra"]:
            data.pop("extra")
        return data

    def summary(self) -> str:
        """One line for descriptions that have little room (plugin browsers)."""
        esr = f", validation ESR {self.val_esr:.4g}" if self.val_esr is not None else ""
        data = f" trained on {self.dataset}" if self.dataset else ""
        knobs = f", knobs {', '.join(self.knob_names)}" if self.knob_names else ""
        return f"nablafx {self.family}{data}{esr}{knobs}"
