"""Feed-forward dynamic range compression, differentiable and streamable.

Gain computer (Giannoulis, Massberg & Reiss, "Digital dynamic range compressor design —
a tutorial and analysis", JAES 2012), on the level ``L = 20 log10(|x| + eps)`` in dB,
threshold ``T``, ratio ``R``, knee width ``W``:

    G(L) = L                                   if 2 (L - T) < -W
         = L + (1/R - 1) (L - T + W/2)^2 / (2W) if |2 (L - T)| <= W
         = T + (L - T) / R                     if 2 (L - T) > W

and the gain reduction is ``r = G(L) - L <= 0`` dB. Ballistics: a branching one-pole
smoother on ``r`` (attack while the reduction deepens, release while it recovers),

    s[n] = alpha[n] s[n-1] + (1 - alpha[n]) r[n],
    alpha[n] = alpha_attack if r[n] < s[n-1] else alpha_release,
    alpha = exp(-1 / (tau * sample_rate)).

The branch choice is piecewise constant, so the smoother is differentiated as the
time-varying one-pole filter it is on each side of a branch switch: the choice is
made without gradient, then the recursion runs through the exact, differentiable
:func:`nablafx.dsp.recursion.iir_filter` (the approach of torchcomp, Yu et al. 2024).
"""

from __future__ import annotations

from typing import List

import numba
import numpy as np
import torch
from torch import Tensor

from nablafx.dsp.recursion import iir_filter

LEVEL_EPS = 1e-6


def gain_computer(level_db: Tensor, threshold_db: Tensor, ratio: Tensor, knee_db: Tensor) -> Tensor:
    """Static compression curve: the gain reduction in dB (<= 0) for each level."""
    over = level_db - threshold_db
    # The knee term is only selected where |2 over| <= knee; clamping its denominator
    # keeps a zero-width knee free of 0/0 in the unselected branch's gradient.
    knee = knee_db.clamp_min(1e-6)
    in_knee = (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * knee)
    above = (1 / ratio - 1) * over
    reduction = torch.where(2 * over > knee, above, torch.where(2 * over < -knee, torch.zeros_like(over), in_knee))
    return reduction


def time_constant_coefficient(time_ms: Tensor, sample_rate: float) -> Tensor:
    """One-pole coefficient ``exp(-1 / (tau fs))`` for a time constant in milliseconds."""
    return (-1000.0 / (time_ms * sample_rate)).exp()


def _branching_smoother(reduction: List[float], alpha_attack: List[float], alpha_release: List[float],
                        s: float, step_a: int, step_r: int, smoothed: List[float], attacking: List[bool]) -> None:
    """The smoother over one signal from ``s``, in place: the smoothed values and, per sample,
    whether it attacked. Written once, in the subset numba (arrays, eager) and TorchScript
    (lists, export) both compile; coefficients are read at ``n * step``."""
    for n in range(len(reduction)):
        attack = reduction[n] < s
        alpha = alpha_attack[n * step_a] if attack else alpha_release[n * step_r]
        s = alpha * s + (1.0 - alpha) * reduction[n]
        smoothed[n] = s
        attacking[n] = attack


_branching_smoother_numba = numba.njit(cache=True, nogil=True)(_branching_smoother)
_branching_smoother_scripted = torch.jit.script(_branching_smoother)


@numba.njit(cache=True, nogil=True)
def _attack_branch(reduction, alpha_attack, alpha_release, s_init, attacking):
    step_a = 1 if alpha_attack.shape[1] > 1 else 0
    step_r = 1 if alpha_release.shape[1] > 1 else 0
    smoothed = np.empty(reduction.shape[1])
    for b in range(reduction.shape[0]):
        _branching_smoother_numba(reduction[b], alpha_attack[b], alpha_release[b], s_init[b], step_a, step_r,
                                  smoothed, attacking[b])


@torch.jit.script
def smooth_gain_scripted(reduction: Tensor, alpha_attack: Tensor, alpha_release: Tensor, state: Tensor) -> Tensor:
    """The branching smoother under TorchScript, for export (no gradient; arguments as
    :func:`smooth_gain`, coefficients already expanded to the batch)."""
    step_a = 1 if alpha_attack.shape[1] > 1 else 0
    step_r = 1 if alpha_release.shape[1] > 1 else 0
    length = reduction.shape[1]
    rows: List[Tensor] = []
    for i in range(reduction.shape[0]):
        r: List[float] = reduction[i].double().tolist()
        attack: List[float] = alpha_attack[i].double().tolist()
        release: List[float] = alpha_release[i].double().tolist()
        smoothed = [0.0] * length
        attacking = [False] * length
        _branching_smoother_scripted(r, attack, release, float(state[i]), step_a, step_r, smoothed, attacking)
        rows.append(torch.tensor(smoothed, dtype=torch.float64))
    return torch.stack(rows).to(reduction.dtype)


def smooth_gain(reduction: Tensor, alpha_attack: Tensor, alpha_release: Tensor,
                state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Attack/release smoothing of a gain reduction curve (dB).

    Args:
        reduction: ``(batch, time)`` target gain reduction in dB.
        alpha_attack, alpha_release: ``(batch or 1, time or 1)`` coefficients.
        state: ``(batch,)`` the smoothed reduction before this block; None = 0 dB.

    Returns:
        ``(smoothed, state)``.
    """
    if state is None:
        state = reduction.new_zeros(reduction.shape[0])
    alpha_attack = alpha_attack.expand(reduction.shape[0], -1)
    alpha_release = alpha_release.expand(reduction.shape[0], -1)
    if torch.jit.is_tracing():  # numba is out of the graph's reach (export)
        smoothed = smooth_gain_scripted(reduction, alpha_attack, alpha_release, state)
        return smoothed, smoothed[:, -1]

    def host(t):
        return t.detach().to(torch.float64).cpu().contiguous().numpy()

    attacking = np.empty(reduction.shape, dtype=np.bool_)
    _attack_branch(host(reduction), host(alpha_attack), host(alpha_release), host(state), attacking)
    alpha = torch.where(torch.from_numpy(attacking).to(reduction.device), alpha_attack, alpha_release)
    smoothed = iir_filter(reduction, (1 - alpha).unsqueeze(1), -alpha.unsqueeze(1), y_init=state.unsqueeze(-1))
    return smoothed, smoothed[:, -1]


def compress(x: Tensor, threshold_db: Tensor, ratio: Tensor, knee_db: Tensor, attack_ms: Tensor,
             release_ms: Tensor, makeup_db: Tensor, sample_rate: float,
             state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Feed-forward compressor on ``x`` (batch, channels, time), channels linked.

    Parameters are ``(batch or 1, time or 1)``; the level is the peak over channels.
    ``state`` is the smoothed gain reduction ``(batch,)`` (dB) carried across blocks.
    """
    level_db = 20 * torch.log10(x.abs().amax(dim=1) + LEVEL_EPS)
    reduction = gain_computer(level_db, threshold_db, ratio, knee_db)
    smoothed, state = smooth_gain(
        reduction,
        time_constant_coefficient(attack_ms, sample_rate),
        time_constant_coefficient(release_ms, sample_rate),
        state,
    )
    gain = 10 ** ((smoothed + makeup_db) / 20)
    return x * gain.unsqueeze(1), state

