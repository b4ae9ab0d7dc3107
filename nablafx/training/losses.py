"""Training loss: a weighted sum of time- and frequency-domain terms.

    L = sum_k w_k * L_k(y_hat, y),   k in {l1, mse, esr, dc, mrstft}

:class:`EffectLoss` computes only the terms whose weight is non-zero. The default,
``{"l1": 1.0, "mrstft": 0.1}``, is the loss of the NablAFx papers (arXiv 2502.11668).
Signals are ``(batch, channels, samples)``; every term is a batch mean of per-example
values, so it does not depend on the batch size (MR-STFT's spectral convergence is the
exception, see :func:`mrstft_loss`).

MR-STFT is auraloss' multi-resolution STFT loss (spectral convergence + log magnitude)
with the resolutions of the NablAFx papers: FFT 1024/2048/512, hops 120/240/50, windows
600/1200/240, Hann (Yamamoto et al., 2020; arXiv 2502.11668).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import auraloss
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nablafx.errors import ConfigError
from nablafx.training import metrics

TIME_DOMAIN_TERMS = ("l1", "mse", "esr", "dc")
LOSS_TERMS = (*TIME_DOMAIN_TERMS, "mrstft")
#: the time-domain terms computed on pre-emphasised signals when ``pre_emphasis`` is set;
#: ``dc`` is not one of them (a pre-emphasis filter removes the DC it measures).
PRE_EMPHASISED_TERMS = ("l1", "mse", "esr")
PRE_EMPHASIS_FILTERS = ("hp", "fd", "aw")
DEFAULT_WEIGHTS: dict[str, float] = {"l1": 1.0, "mrstft": 0.1}

#: the largest FFT of :func:`mrstft_loss`: torch.stft reflect-pads n_fft // 2 samples on
#: each side, which needs more samples than that
_MRSTFT_FFT_SIZES = (1024, 2048, 512)
MRSTFT_MIN_SAMPLES = max(_MRSTFT_FFT_SIZES) // 2 + 1


def mrstft_loss() -> nn.Module:
    """auraloss' MR-STFT with the papers' resolutions.

    For each resolution r (FFT size, hop, window) with magnitudes ``|Y|``, ``|Y_hat|`` of
    the whole batch (channels folded into the batch)::

        L_r = || |Y| - |Y_hat| ||_F / || |Y| ||_F  +  mean | log|Y| - log|Y_hat| |
        MR-STFT = mean_r L_r

    (spectral convergence, Arik et al., 2018, arXiv 1808.06719, plus log-magnitude L1;
    Yamamoto et al., 2020, arXiv 1910.11480). auraloss 0.4.0 clamps ``|X|^2 >= 1e-8``
    before the square root and log (a -80 dB floor), takes the spectral-convergence
    Frobenius norms over the whole batch (so that part is not a mean of per-example
    values; :func:`nablafx.training.metrics.mrstft_per_example` gives per-example
    values), and needs more than 1024 samples (``MRSTFT_MIN_SAMPLES``) for its 2048-point
    FFT, otherwise torch.stft raises about its reflect padding.
    """
    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=list(_MRSTFT_FFT_SIZES),
        hop_sizes=[120, 240, 50],
        win_lengths=[600, 1200, 240],
        w_sc=1.0,
        w_log_mag=1.0,
        w_lin_mag=0.0,
    )


class PreEmphasis(nn.Module):
    """FIR pre-emphasis of prediction and target (Wright & Välimäki, 2020, arXiv 1911.08922).

    Filters (the designs of ``auraloss.perceptual.FIRFilter``):

    - ``"hp"``: first-order high-pass ``H(z) = 1 - coef z^-1``, i.e.
      ``y_f[n] = y[n] - coef * y[n-1]`` (causal, zero initial state, same length);
    - ``"fd"``: folded differentiator ``H(z) = 1 - coef z^-2``;
    - ``"aw"``: auraloss' 101-tap least-squares FIR fit of the A-weighting curve (IEC
      61672) at ``sample_rate``; linear phase, applied centred (zero delay) as auraloss
      does. ``coef`` does not apply.

    ``coef`` = 0.85 is Wright & Välimäki's value at 44.1 kHz (auraloss' default); the
    same filter at 48 kHz moves the emphasis slightly. auraloss' own ``FIRFilter.forward``
    is not used: it cross-correlates (it applies ``coef * y[n] - y[n-1]`` reversed, i.e.
    ``y[n-1] - coef * y[n]``) and pads every filter by ``ntaps // 2`` = 50 samples per
    side, so its outputs are 98 samples longer than the input (mostly zeros, which scale
    down every mean-based term), and it accepts only one channel and float32. This
    module takes its taps and applies them as a convolution on any channel count and
    dtype. The taps are a non-persistent buffer: they move with ``.to(device)`` and are
    not in the checkpoint.
    """

    def __init__(self, filter: str = "hp", coef: float = 0.85, sample_rate: float | None = None):
        super().__init__()
        if filter not in PRE_EMPHASIS_FILTERS:
            raise ConfigError(
                f"pre_emphasis filter must be one of {list(PRE_EMPHASIS_FILTERS)} (first-order high-pass, "
                f"folded differentiator, A-weighting), got {filter!r}"
            )
        if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not 0.0 < coef <= 1.0:
            raise ConfigError(
                f"pre_emphasis coef must be a number in (0, 1] (0.85 at 44.1 kHz in Wright & Välimäki 2020), "
                f"got {coef!r}"
            )
        if filter == "aw":
            if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
                raise ConfigError(
                    f"pre_emphasis filter 'aw' (A-weighting) is designed at the data's sample rate: add "
                    f"sample_rate (e.g. 48000) to pre_emphasis, got sample_rate={sample_rate!r}"
                )
        self.filter = filter
        self.coef = float(coef)
        self.sample_rate = sample_rate
        design = auraloss.perceptual.FIRFilter(filter_type=filter, coef=float(coef), fs=sample_rate or 44100)
        taps = design.fir.weight.detach().reshape(-1).to(torch.float64)
        if filter == "aw":
            self.left, self.right = taps.numel() // 2, taps.numel() // 2  # centred, symmetric taps
        else:
            # auraloss stores b = [1, -coef, 0] ("hp") / [1, 0, -coef] ("fd"): H(z) = sum_k b_k z^-k
            self.left, self.right = taps.numel() - 1, 0  # causal
        # conv1d cross-correlates: flip b to convolve
        self.register_buffer("kernel", taps.flip(0).reshape(1, 1, -1), persistent=False)

    def filtered(self, x: Tensor) -> Tensor:
        """``x`` (..., samples) filtered along the last axis, same shape and dtype."""
        shape = x.shape
        flat = x.reshape(-1, 1, shape[-1])
        out = F.conv1d(F.pad(flat, (self.left, self.right)), self.kernel.to(dtype=x.dtype, device=x.device))
        return out.reshape(shape)

    def forward(self, y_hat: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.filtered(y_hat), self.filtered(y)

    def extra_repr(self) -> str:
        rate = f", sample_rate={self.sample_rate}" if self.filter == "aw" else ""
        return f"filter={self.filter!r}, coef={self.coef}{rate}"


def _dc(y_hat: Tensor, y: Tensor) -> Tensor:
    return auraloss.time.DCLoss(eps=metrics._EPS, reduction="mean")(y_hat, y)


#: time-domain terms: name -> fn(y_hat, y) -> batch mean. One definition each: the metrics'.
_TIME_TERMS = {"l1": metrics.l1, "mse": metrics.mse, "esr": metrics.esr, "dc": _dc}


class EffectLoss(nn.Module):
    """A weighted sum of audio losses; only terms with a non-zero weight are computed.

    With ``e = y - y_hat`` per example (``N`` samples; ``eps`` = 1e-8):

    - ``l1``: ``mean |e|`` (all elements);
    - ``mse``: ``mean e^2``;
    - ``esr``: error-to-signal ratio ``sum e^2 / (sum y^2 + eps)`` per example (channels
      and samples), batch mean (auraloss.time.ESRLoss; Wright & Välimäki, 2020,
      arXiv 1911.08922; the same function as the logged ``esr`` metric);
    - ``dc``: ``(mean e)^2 / (mean y^2 + eps)`` per example and channel, mean
      (auraloss.time.DCLoss; Wright & Välimäki, 2020);
    - ``mrstft``: multi-resolution STFT loss, see :func:`mrstft_loss`.

    Args:
        weights: term name -> weight ``>= 0``, at least one non-zero. The default is the
            NablAFx papers' ``L1 + 0.1 MR-STFT``.
        pre_emphasis: ``None`` or ``{"filter": "hp" | "fd" | "aw", "coef": 0.85,
            "sample_rate": ...}`` (see :class:`PreEmphasis`; ``sample_rate`` is needed
            by ``"aw"`` only). The filter is applied to both ``y_hat`` and ``y`` before
            ``l1``, ``mse`` and ``esr``, as NAM (pre-emphasised MSE) and Wright &
            Välimäki (pre-emphasised ESR) do: it weights the error towards the high
            frequencies where a model's aliasing and missing harmonics are heard. It is
            not applied before ``mrstft`` (the log-magnitude term already weights quiet
            high bands, and a pre-emphasis would only tilt it) nor before ``dc``: every
            filter offered has (almost) no gain at 0 Hz (``1 - coef`` for hp/fd,
            -inf dB for A-weighting), so it would remove the offset the DC term exists to
            measure; Wright & Välimäki also add the DC term on unfiltered signals.

    ``forward(y_hat, y)`` returns ``(total, terms)``: ``total = sum_k w_k * terms[k]`` and
    ``terms`` the unweighted value of every weighted term (for logging), in the order of
    ``LOSS_TERMS``.
    """

    def __init__(
        self,
        weights: dict[str, float] = {"l1": 1.0, "mrstft": 0.1},  # noqa: B006 (copied, never mutated)
        pre_emphasis: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.weights = _checked_weights(weights)
        self.pre_emphasis = _pre_emphasis(pre_emphasis, self.weights)
        self.mrstft = mrstft_loss() if "mrstft" in self.weights else None

    def forward(self, y_hat: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if y_hat.shape != y.shape:
            raise ValueError(f"prediction {tuple(y_hat.shape)} and target {tuple(y.shape)} differ in shape")
        terms: dict[str, Tensor] = {}
        filtered = self.pre_emphasis(y_hat, y) if self.pre_emphasis is not None else (y_hat, y)
        for name in TIME_DOMAIN_TERMS:
            if name in self.weights:
                pair = filtered if name in PRE_EMPHASISED_TERMS else (y_hat, y)
                terms[name] = _TIME_TERMS[name](*pair)
        if self.mrstft is not None:
            if y.shape[-1] < MRSTFT_MIN_SAMPLES:
                raise ConfigError(
                    f"the mrstft loss term needs at least {MRSTFT_MIN_SAMPLES} samples per segment (its "
                    f"largest FFT is {max(_MRSTFT_FFT_SIZES)}), got {y.shape[-1]}; use longer segments or "
                    f"TBPTT chunks, or set the mrstft weight to 0"
                )
            terms["mrstft"] = self.mrstft(y_hat, y)
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, terms

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


def _checked_weights(weights: Any) -> dict[str, float]:
    """The non-zero weights in ``LOSS_TERMS`` order, or a ConfigError naming the problem."""
    valid = ", ".join(LOSS_TERMS)
    if not isinstance(weights, Mapping):
        raise ConfigError(f"loss weights must be a mapping of term name to weight (terms: {valid}), got {weights!r}")
    unknown = [name for name in weights if name not in LOSS_TERMS]
    if unknown:
        raise ConfigError(f"unknown loss term(s) {unknown} in loss weights; valid terms: {valid}")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"loss weight {name}={weight!r} must be a finite number >= 0 (0 turns the term off)")
    active = {name: float(weights[name]) for name in LOSS_TERMS if weights.get(name, 0) > 0}
    if not active:
        raise ConfigError(
            f"all loss weights are zero ({dict(weights)}): give at least one term a positive weight, e.g. "
            f"{{l1: 1.0, mrstft: 0.1}} (terms: {valid})"
        )
    return active


def _pre_emphasis(options: Any, weights: dict[str, float]) -> PreEmphasis | None:
    if options is None:
        return None
    keys = ("filter", "coef", "sample_rate")
    if not isinstance(options, Mapping) or "filter" not in options:
        raise ConfigError(
            f"pre_emphasis must be null or a mapping like {{filter: hp, coef: 0.85}} (filters: "
            f"{', '.join(PRE_EMPHASIS_FILTERS)}), got {options!r}"
        )
    unknown = [key for key in options if key not in keys]
    if unknown:
        raise ConfigError(f"unknown pre_emphasis key(s) {unknown}; valid keys: {', '.join(keys)}")
    if not any(name in weights for name in PRE_EMPHASISED_TERMS):
        raise ConfigError(
            f"pre_emphasis applies to the {'/'.join(PRE_EMPHASISED_TERMS)} terms, but none has a non-zero "
            f"weight ({weights}); give one a weight or remove pre_emphasis"
        )
    return PreEmphasis(**dict(options))
