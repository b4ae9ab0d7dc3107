"""Figures for logging and reports. Figures are plain :class:`matplotlib.figure.Figure`
objects (Agg rendering, never registered with pyplot), so nothing needs closing and no
display is touched; save them with ``fig.savefig(path)``."""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor, nn

from nablafx.plots.graybox import chain_figures
from nablafx.plots.response import response_figure, stepped_sine_response


def model_figures(model: nn.Module, sample_rate: float, x: Tensor | None = None,
                  knobs: Tensor | None = None) -> dict[str, Figure]:
    """Figures for any model: the stepped-sine gain response (``response/stepped_sine``),
    plus, for a gray-box chain, the per-stage figures of :func:`chain_figures`."""
    from nablafx.models.graybox import GrayBoxChain

    figures = {}
    if isinstance(model, GrayBoxChain):
        figures.update(chain_figures(model, sample_rate, x, knobs))
    figures["response/stepped_sine"] = response_figure(model, sample_rate, knobs)
    return figures


__all__ = ["chain_figures", "model_figures", "response_figure", "stepped_sine_response"]
