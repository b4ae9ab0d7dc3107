"""Audio metrics, per example and averaged over the batch (so they do not depend on batch size).

Signals are ``(batch, channels, samples)`` (``(batch, samples)`` works too). Every
``*_per_example`` function returns a ``(batch,)`` tensor; the batch-mean form of each is
its mean. :class:`PerSettingMetrics` groups per-example values by device setting across
test batches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import auraloss
import numpy as np
import torch
from torch import Tensor

from nablafx.errors import ConfigError

_EPS = 1e-8

#: BS.1770-4's absolute gate; integrated loudness below it (digital silence gives -inf)
#: counts as this value in :func:`integrated_loudness`
LUFS_FLOOR = -70.0
#: BS.1770-4's gating block
LUFS_BLOCK_SECONDS = 0.4


# --- sample-domain metrics -----------------------------------------------------------------


def esr_per_example(y_hat: Tensor, y: Tensor) -> Tensor:
    """Error-to-signal ratio ``sum((y - y_hat)^2) / (sum(y^2) + 1e-8)`` over each example's
    channels and samples (auraloss.time.ESRLoss on the flattened example), ``(batch,)``."""
    return auraloss.time.ESRLoss(eps=_EPS, reduction="none")(y_hat.flatten(1), y.flatten(1))


def l1_per_example(y_hat: Tensor, y: Tensor) -> Tensor:
    """``mean |y - y_hat|`` over each example's channels and samples, ``(batch,)``."""
    return (y - y_hat).abs().flatten(1).mean(-1)


def mse_per_example(y_hat: Tensor, y: Tensor) -> Tensor:
    """``mean (y - y_hat)^2`` over each example's channels and samples, ``(batch,)``."""
    return (y - y_hat).pow(2).flatten(1).mean(-1)


def esr(y_hat: Tensor, y: Tensor) -> Tensor:
    """Error-to-signal ratio per example, batch mean."""
    return esr_per_example(y_hat, y).mean()


def mse(y_hat: Tensor, y: Tensor) -> Tensor:
    """Mean squared error (per example, batch mean: equal to the mean over all elements)."""
    return mse_per_example(y_hat, y).mean()


def l1(y_hat: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error (per example, batch mean: equal to the mean over all elements)."""
    return l1_per_example(y_hat, y).mean()


@functools.lru_cache(maxsize=1)
def _mrstft() -> torch.nn.Module:
    from nablafx.training.losses import mrstft_loss  # losses imports this module

    return mrstft_loss()


def mrstft_per_example(y_hat: Tensor, y: Tensor) -> Tensor:
    """The training loss' MR-STFT (:func:`nablafx.training.losses.mrstft_loss`) of each
    example on its own, ``(batch,)``.

    One call per example: auraloss' spectral convergence normalises by the whole batch's
    spectrum, so the batch value is not a mean of per-example values. Needs more than
    1024 samples per example.
    """
    loss = _mrstft()
    return torch.stack([loss(y_hat[i : i + 1], y[i : i + 1]) for i in range(y.shape[0])])


# --- loudness ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _meter(sample_rate: float, block_size: float = LUFS_BLOCK_SECONDS):
    import pyloudnorm

    return pyloudnorm.Meter(sample_rate, block_size=block_size)


def _check_sample_rate(sample_rate) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
        raise ConfigError(
            f"loudness needs the audio's sample rate in Hz (e.g. 48000), got sample_rate={sample_rate!r}"
        )
    return float(sample_rate)


def _channels_last(x: Tensor) -> np.ndarray:
    """``(batch, [channels,] samples)`` -> float64 ``(batch, samples, channels)``."""
    if x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != 3:
        raise ValueError(f"expected (batch, channels, samples) audio, got shape {tuple(x.shape)}")
    if x.shape[1] > 5:
        raise ConfigError(
            f"BS.1770 loudness (pyloudnorm) handles at most 5 channels, got {x.shape[1]}; measure fewer channels"
        )
    return x.detach().to("cpu", torch.float64).numpy().transpose(0, 2, 1)


def _loudness(signal: np.ndarray, sample_rate: float) -> float:
    """Integrated loudness of one ``(samples, channels)`` signal, with the module's rules."""
    samples = signal.shape[0]
    if samples == 0:
        raise ValueError("cannot measure the loudness of an empty signal")
    if not np.isfinite(signal).all():
        return math.nan  # pyloudnorm's gate drops NaN blocks (NaN would read as silence): keep it visible
    block = LUFS_BLOCK_SECONDS
    if samples < block * sample_rate:
        # One gating block spanning the whole signal. pyloudnorm requires at least
        # block_size * rate samples and averages samples [0, int(block_size * rate)):
        # nudge the block to exactly `samples` in floating point and append one zero
        # sample (after the block, so it adds nothing) to pass its length check.
        block = samples / sample_rate
        while block * sample_rate < samples:
            block = math.nextafter(block, math.inf)
        signal = np.concatenate([signal, np.zeros((1, signal.shape[1]))])
    return max(float(_meter(sample_rate, block).integrated_loudness(signal)), LUFS_FLOOR)


def integrated_loudness(x: Tensor, sample_rate: float) -> Tensor:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, K-weighting, gated 400 ms blocks with
    75 % overlap; pyloudnorm 0.2.0) of each example, ``(batch,)`` float64 on the CPU.

    Rules where BS.1770-4 gives no number:

    - an example shorter than one 400 ms block is measured as a single block spanning
      the whole example (the standard's block loudness ``-0.691 + 10 log10(sum_c G_c
      mean(z_c^2))`` with the block length set to the example's; pyloudnorm itself
      raises for such input);
    - loudness below the absolute gate, -70 LUFS (``LUFS_FLOOR``), including digital
      silence (-inf from pyloudnorm), counts as -70 LUFS, so two silent signals differ
      by 0 LU and silence against a -20 LUFS signal by 50 LU, never inf or NaN.

    An example with a NaN or inf sample gives NaN (pyloudnorm alone would gate it
    out and call it silence). Channels follow BS.1770's order (L, R, C, Ls, Rs: gains 1, 1,
    1, 1.41, 1.41), at most 5.
    """
    rate = _check_sample_rate(sample_rate)
    return torch.tensor([_loudness(example, rate) for example in _channels_last(x)], dtype=torch.float64)


def loudness_difference_lufs_per_example(y_hat: Tensor, y: Tensor, sample_rate: float) -> Tensor:
    """``|L(y_hat) - L(y)|`` in LU per example (:func:`integrated_loudness`), ``(batch,)``
    in ``y``'s dtype and device."""
    if y_hat.shape != y.shape:
        raise ValueError(f"prediction {tuple(y_hat.shape)} and target {tuple(y.shape)} differ in shape")
    difference = (integrated_loudness(y_hat, sample_rate) - integrated_loudness(y, sample_rate)).abs()
    return difference.to(dtype=y.dtype if y.is_floating_point() else torch.float32, device=y.device)


def loudness_difference_lufs(y_hat: Tensor, y: Tensor, sample_rate: float) -> Tensor:
    """Mean absolute integrated-loudness difference in LU (ITU-R BS.1770-4) over the batch."""
    return loudness_difference_lufs_per_example(y_hat, y, sample_rate).mean()


# --- per-setting accumulation --------------------------------------------------------------

NO_KNOBS = "no knobs"


def setting_keys(knobs: Tensor | None, knob_names: Sequence[str] = (), batch_size: int | None = None) -> list[str]:
    """One key per example naming its knob vector, e.g. ``"G=0.5 T=0.25"``.

    ``knobs`` is the batch's ``(batch, K)`` tensor; values print with 6 significant digits
    (``:g``), so settings that differ only beyond that share a key. With no knobs
    (``None`` or ``K = 0``) every example gets ``"no knobs"`` (pass ``batch_size`` when
    ``knobs`` is ``None``). Knobs without a name are called ``k0``, ``k1``, ...
    """
    if knobs is None or knobs.numel() == 0:
        count = batch_size if knobs is None else knobs.shape[0]
        if count is None:
            raise ValueError("setting_keys(None) needs batch_size")
        return [NO_KNOBS] * count
    values = knobs.detach().reshape(knobs.shape[0], -1).to("cpu", torch.float64).tolist()
    names = list(knob_names) if len(knob_names) == len(values[0]) else [f"k{i}" for i in range(len(values[0]))]
    return [" ".join(f"{name}={value:g}" for name, value in zip(names, row)) for row in values]


class PerSettingMetrics:
    """Means of per-example metrics grouped by setting, accumulated over batches.

    Each example counts once, whatever the batch it came in::

        acc = PerSettingMetrics()
        acc.update(["G=0.5", "G=1", "G=0.5"], esr=torch.tensor([0.1, 0.3, 0.2]), l1=...)
        acc.rows()  # [{"setting": "G=0.5", "examples": 2, "esr": 0.15, "l1": ...},
                    #  {"setting": "G=1", "examples": 1, "esr": 0.3, "l1": ...}]

    ``ratios`` names metrics pooled over a setting's examples instead of averaged:
    ``PerSettingMetrics(ratios={"esr": ("error_energy", "target_energy")})`` reports
    ``esr = sum(error_energy) / sum(target_energy)`` per setting (the error-to-signal ratio of
    all its audio, as NAM and Wright & Välimäki compute it, whatever the segment length) and
    leaves the two parts out of the rows.

    The metric names are free (``esr``, ``l1``, ``mse``, ``mrstft``, ``lufs_diff``, ...)
    but fixed by the first ``update``: every later one must give the same names. Values
    are ``(batch,)`` tensors (any shape with ``batch`` elements, any device) or
    sequences of numbers. Rows come in the order the settings were first seen. NaN
    values stay in the mean (a broken prediction shows as NaN). State is per process:
    under DDP each rank holds only its own examples until :meth:`sync` merges them.
    """

    def __init__(self, ratios: dict[str, tuple[str, str]] | None = None) -> None:
        self.ratios = dict(ratios or {})
        self.reset()

    def _with_ratios(self, means: dict) -> dict:
        for name, (numerator, denominator) in self.ratios.items():
            if numerator in means and denominator in means:
                top, bottom = means.pop(numerator), means.pop(denominator)
                means[name] = top / bottom if bottom > 0 else math.nan
        return means

    def reset(self) -> None:
        self.names: tuple[str, ...] | None = None
        self._counts: dict[str, int] = {}
        self._sums: dict[str, list[float]] = {}

    def update(self, settings: Sequence[str], **values) -> None:
        if not values:
            raise ValueError("PerSettingMetrics.update needs at least one metric, e.g. esr=<(batch,) tensor>")
        names = tuple(values) if self.names is None else self.names
        if set(values) != set(names):
            raise ValueError(f"PerSettingMetrics.update got metrics {list(values)}, earlier updates {list(names)}")
        settings = [str(key) for key in settings]
        columns = []
        for name in names:
            column = _as_floats(values[name])
            if len(column) != len(settings):
                raise ValueError(f"metric {name} has {len(column)} values for {len(settings)} settings")
            columns.append(column)
        self.names = names
        for i, key in enumerate(settings):
            sums = self._sums.setdefault(key, [0.0] * len(self.names))
            self._counts[key] = self._counts.get(key, 0) + 1
            for j, column in enumerate(columns):
                sums[j] += column[i]

    def sync(self) -> None:
        """Merge the examples of every process of the ``torch.distributed`` group, so that each
        rank holds all of them (a no-op in one process).

        A collective call: every rank must make it. Ranks are merged in rank order, so when
        they held consecutive blocks of one test set in order (as
        :class:`~nablafx.data.dataset.ShardSampler` gives them) the settings keep the order
        one process would have seen them in.
        """
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        shares: list = [None] * dist.get_world_size()
        dist.all_gather_object(shares, (self.names, self._counts, self._sums))
        self.reset()
        for names, counts, sums in shares:
            if names is None:  # a rank that saw no examples
                continue
            if self.names is not None and set(names) != set(self.names):
                raise ValueError(f"ranks accumulated different metrics: {list(self.names)} and {list(names)}")
            order = [names.index(name) for name in (self.names or names)]
            self.names = self.names or names
            for key, count in counts.items():
                merged = self._sums.setdefault(key, [0.0] * len(self.names))
                self._counts[key] = self._counts.get(key, 0) + count
                for j, k in enumerate(order):
                    merged[j] += sums[key][k]

    def rows(self) -> list[dict]:
        """One ``{"setting", "examples", <metric>: mean (or pooled ratio), ...}`` dict per setting."""
        return [
            {"setting": key, "examples": count,
             **self._with_ratios({n: s / count for n, s in zip(self.names, self._sums[key])})}
            for key, count in self._counts.items()
        ]

    def overall(self) -> dict:
        """Means over all examples (each example once): ``{"setting": "all", "examples", ...}``."""
        count = sum(self._counts.values())
        totals = [sum(sums[j] for sums in self._sums.values()) for j in range(len(self.names or ()))]
        means = {n: (t / count if count else math.nan) for n, t in zip(self.names or (), totals)}
        return {"setting": "all", "examples": count, **self._with_ratios(means)}

    def __len__(self) -> int:
        return len(self._counts)


def _as_floats(values) -> list[float]:
    if isinstance(values, Tensor):
        return values.detach().reshape(-1).to("cpu", torch.float64).tolist()
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
