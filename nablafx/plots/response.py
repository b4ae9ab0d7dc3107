"""Stepped-sine gain response of any model, measured at the model's own sample rate.

Each tone is generated at ``sample_rate`` (the rate the model was trained at; feeding
tones at another rate shifts every frequency), run through the model
from silence, and its steady-state amplitude at the tone frequency is measured with a
Hann-windowed single-bin DFT. Nonlinear models get one curve per input level.
"""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

DEFAULT_LEVELS_DB = (-30.0, -18.0, -6.0, 0.0)
MEASURE_SAMPLES = 4096
MAX_SETTLE_S = 0.2


def _call(model: nn.Module, x: Tensor, knobs: Tensor | None) -> Tensor:
    out = model(x, knobs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def stepped_sine_response(model: nn.Module, sample_rate: float, knobs: Tensor | None = None,
                          num_frequencies: int = 24, levels_db=DEFAULT_LEVELS_DB) -> tuple[Tensor, Tensor]:
    """Gain in dB ``(levels, frequencies)`` at log-spaced frequencies from 20 Hz to 0.9 x Nyquist.

    The tones last long enough for the model's receptive field to fill (capped at
    ``MAX_SETTLE_S``; recurrent models, receptive field 0, get the cap) before
    ``MEASURE_SAMPLES`` samples are measured. ``knobs`` ``(1, n_knobs)`` or None (0.5 each
    when the model needs knobs). Returns ``(frequencies_hz, gain_db)``.
    """
    frequencies = torch.logspace(math.log10(20.0), math.log10(0.45 * sample_rate), num_frequencies, dtype=torch.float64)
    levels = torch.tensor(levels_db, dtype=torch.float64)
    receptive_field = int(getattr(model, "receptive_field", 0))
    settle = min(receptive_field if receptive_field > 0 else 10**9, int(MAX_SETTLE_S * sample_rate))
    n = torch.arange(settle + MEASURE_SAMPLES, dtype=torch.float64)
    amplitude = 10 ** (levels / 20)
    phase = 2 * math.pi * frequencies.unsqueeze(-1) * n / sample_rate  # (F, N)
    x = (amplitude.view(-1, 1, 1) * phase.sin()).reshape(-1, 1, n.numel())  # (L * F, 1, N)
    num_knobs = int(getattr(model, "num_knobs", 0))
    if num_knobs and knobs is None:
        knobs = torch.full((1, num_knobs), 0.5)
    if knobs is not None:
        knobs = knobs[:1].expand(x.shape[0], -1)
    reference = next(model.parameters(), torch.empty(0))
    to_model = dict(device=reference.device, dtype=reference.dtype)
    y = _call(model, x.to(**to_model), None if knobs is None else knobs.to(**to_model))
    y = y.to("cpu", torch.float64)[:, 0, settle:]

    window = torch.hann_window(MEASURE_SAMPLES, periodic=False, dtype=torch.float64)
    carrier = torch.exp(-1j * phase[:, settle:]).repeat(len(levels), 1)  # (L * F, M)
    measured = 2 * (y * window * carrier).sum(-1).abs() / window.sum()
    gain = measured.reshape(len(levels), num_frequencies) / amplitude.unsqueeze(-1)
    return frequencies, 20 * torch.log10(gain + 1e-12)


def response_figure(model: nn.Module, sample_rate: float, knobs: Tensor | None = None) -> Figure:
    was_training = model.training
    model.eval()
    try:
        frequencies, gain_db = stepped_sine_response(model, sample_rate, knobs)
    finally:
        model.train(was_training)
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for level, curve in zip(DEFAULT_LEVELS_DB, gain_db):
        ax.semilogx(frequencies, curve, marker=".", label=f"{level:+.0f} dBFS in")
    ax.set(xlabel="frequency (Hz)", ylabel="gain (dB)",
           title=f"stepped-sine gain response at {sample_rate / 1000:g} kHz")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
