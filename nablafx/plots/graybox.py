"""Figures that show what each stage of a gray-box chain learned.

- ``graybox/responses``: magnitude response of every filter stage (EQ, biquads, FIR);
  one curve when static, one per sampled control step when time-varying;
- ``graybox/trajectories``: parameters of the other stages (gains, offsets, compressor)
  over time, drawn over the chain-input waveform;
- ``graybox/nonlinearities``: transfer curves, with the input range actually seen;
- ``graybox/fir``: FIR taps and response;
- ``graybox/parameters``: every parameter's value (or min/mean/max when it moves) as a table.
"""

from __future__ import annotations

import copy
import math

import torch
from matplotlib.figure import Figure
from torch import Tensor

from nablafx.processors import BiquadCascade, FIRFilter, Nonlinearity

RESPONSE_FFT = 8192
MAX_CURVES = 8


def test_signal(sample_rate: float, seconds: float = 1.0) -> Tensor:
    """A 220 Hz tone whose level steps through -26, -6, -20 and 0 dBFS, so envelope-driven
    controllers move; ``(1, 1, time)``."""
    n = int(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    levels = torch.tensor([0.05, 0.5, 0.1, 1.0]).repeat_interleave(-(-n // 4))[:n]
    return (levels * torch.sin(2 * math.pi * 220.0 * t)).view(1, 1, n)


def _grid(num: int, width: float = 5.0, height: float = 3.2, columns: int = 2) -> tuple[Figure, list]:
    cols = min(columns, num)
    rows = -(-num // cols)
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[num:]:
        ax.set_visible(False)
    return fig, axes[:num]


def _time_slices(values: dict[str, Tensor]) -> list[int]:
    length = max(v.shape[-1] for v in values.values()) if values else 1
    return sorted(set(torch.linspace(0, length - 1, min(MAX_CURVES, length)).long().tolist()))


def _at(values: dict[str, Tensor], t: int) -> dict[str, Tensor]:
    return {k: v[:1, min(t, v.shape[-1] - 1)].reshape(1, 1) for k, v in values.items()}


def _db(response: Tensor) -> Tensor:
    return 20 * torch.log10(response.abs().clamp_min(1e-9))


def responses_figure(records: list[dict], sample_rate: float) -> Figure | None:
    stages = [r for r in records if isinstance(r["processor"], (BiquadCascade, FIRFilter))]
    if not stages:
        return None
    fig, axes = _grid(len(stages))
    freqs = torch.fft.rfftfreq(RESPONSE_FFT, 1 / sample_rate)[1:]
    for ax, record in zip(axes, stages):
        times = _time_slices(record["values"])
        for t in times:
            response = record["processor"].frequency_response(_at(record["values"], t), RESPONSE_FFT)[0, 1:]
            label = f"t = {t / sample_rate:.2f} s" if len(times) > 1 else None
            ax.semilogx(freqs, _db(response), label=label)
        ax.set(title=record["name"], xlabel="Hz", ylabel="dB")
        ax.grid(True, which="both", alpha=0.3)
        if len(times) > 1:
            ax.legend(fontsize=7)
    fig.suptitle("filter stages: magnitude response")
    fig.tight_layout()
    return fig


def trajectories_figure(records: list[dict], chain_input: Tensor, sample_rate: float) -> Figure | None:
    stages = [
        r for r in records
        if r["processor"].num_params and not isinstance(r["processor"], (BiquadCascade, FIRFilter))
    ]
    if not stages:
        return None
    fig, axes = _grid(sum(r["processor"].num_params for r in stages), columns=2)
    waveform = chain_input[0, 0]
    t = torch.arange(waveform.numel()) / sample_rate
    panels = iter(axes)
    for record in stages:
        for spec in record["processor"].param_specs:
            ax = next(panels)
            ax.plot(t, waveform, color="0.8", linewidth=0.5)
            ax.set_ylabel("input", color="0.5")
            value = record["values"][spec.name][0].expand(waveform.numel())
            twin = ax.twinx()
            twin.plot(t, value, color="C3")
            twin.set_ylabel(f"{spec.name} ({spec.unit})" if spec.unit else spec.name, color="C3")
            ax.set(title=f"{record['name']}: {spec.name}", xlabel="s")
    fig.suptitle("gains, offsets and dynamics over the input waveform")
    fig.tight_layout()
    return fig


def nonlinearities_figure(records: list[dict]) -> Figure | None:
    stages = [r for r in records if isinstance(r["processor"], Nonlinearity)]
    if not stages:
        return None
    fig, axes = _grid(len(stages), width=4.5, height=3.5)
    x = torch.linspace(-4, 4, 801)
    for ax, record in zip(axes, stages):
        ax.plot(x, record["processor"].transfer(x), label="learned")
        ax.plot(x, torch.tanh(x), ":", color="0.5", label="tanh")
        seen = record["input"]
        ax.axvspan(float(seen.min()), float(seen.max()), color="C2", alpha=0.1, label="input range seen")
        ax.set(title=record["name"], xlabel="input", ylabel="output")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("nonlinearity transfer curves")
    fig.tight_layout()
    return fig


def fir_figure(records: list[dict], sample_rate: float) -> Figure | None:
    stages = [r for r in records if isinstance(r["processor"], FIRFilter)]
    if not stages:
        return None
    fig = Figure(figsize=(10, 3.5 * len(stages)))
    axes = fig.subplots(len(stages), 2, squeeze=False)
    freqs = torch.fft.rfftfreq(RESPONSE_FFT, 1 / sample_rate)[1:]
    for (ax_taps, ax_mag), record in zip(axes, stages):
        taps = record["processor"].taps()
        ax_taps.stem(taps.numpy())
        ax_taps.set(title=f"{record['name']}: taps", xlabel="tap")
        ax_mag.semilogx(freqs, _db(torch.fft.rfft(taps, n=RESPONSE_FFT)[1:]))
        ax_mag.set(title=f"{record['name']}: magnitude response", xlabel="Hz", ylabel="dB")
        ax_mag.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def parameters_figure(records: list[dict]) -> Figure | None:
    rows = []
    for record in records:
        for spec in record["processor"].param_specs:
            value = record["values"][spec.name][0]
            shown = (
                f"{float(value[0]):.4g}" if value.numel() == 1
                else f"{float(value.min()):.4g} / {float(value.mean()):.4g} / {float(value.max()):.4g}"
            )
            rows.append([record["name"], spec.name, spec.unit, shown, f"[{spec.minimum:g}, {spec.maximum:g}]"])
    if not rows:
        return None
    fig = Figure(figsize=(9, 0.6 + 0.25 * len(rows)))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["stage", "parameter", "unit", "value (min / mean / max)", "range"],
                     loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.1)
    fig.tight_layout()
    return fig


@torch.no_grad()
def chain_figures(chain, sample_rate: float, x: Tensor | None = None, knobs: Tensor | None = None) -> dict[str, Figure]:
    """All gray-box figures for ``chain`` on ``x`` (default :func:`test_signal`), first batch item.

    Works on a float32 CPU copy in evaluation mode (streaming path), so the chain being
    trained, wherever it lives, is left untouched.
    """
    chain = copy.deepcopy(chain).to("cpu", torch.float32).eval()
    x = test_signal(sample_rate) if x is None else x[:1, :, : int(2 * sample_rate)].to("cpu", torch.float32)
    if chain.num_knobs:
        knobs = torch.full((1, chain.num_knobs), 0.5) if knobs is None else knobs[:1].to("cpu", torch.float32)
    else:
        knobs = None
    _, _, records = chain.run(x, knobs, record=True)
    figures = {
        "graybox/responses": responses_figure(records, sample_rate),
        "graybox/trajectories": trajectories_figure(records, x, sample_rate),
        "graybox/nonlinearities": nonlinearities_figure(records),
        "graybox/fir": fir_figure(records, sample_rate),
        "graybox/parameters": parameters_figure(records),
    }
    return {name: fig for name, fig in figures.items() if fig is not None}
