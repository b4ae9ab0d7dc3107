"""The sample rate an export runs at: the training rate, or a gray-box chain rebuilt at another.

``nablafx export --sample-rate R`` must not just write ``R`` into the artefact: a model
trained at ``T`` Hz does not sound the same when a host feeds it ``R`` Hz audio.

- Black-box nets (TCN, GCN, WaveNet, LSTM/GRU, S4) count samples, not seconds: their
  dilations, kernels, recurrences and learned filters are tied to ``T``. ``R != T`` is
  refused; the fix is to export at ``T`` and let the host resample, or to retrain at ``R``.
  ``R`` is accepted when it equals ``T`` or the checkpoint records no rate (then it is the
  user's statement of the rate, recorded as given).
- Gray-box chains are built in physical units from ``sample_rate``: filter cutoffs in Hz
  (each biquad designed at the rate by the bilinear transform, so its cutoff, Q and gain
  are kept; only the warping near Nyquist follows the new rate), compressor times in ms,
  gains, offsets and memoryless nonlinearities independent of it. Such a chain is rebuilt
  at ``R`` with the same weights (:func:`rebuild_at`). Stages whose meaning is in samples
  are refused: FIR taps (an impulse response sampled at ``T``) and dynamic controllers
  (``control_block_size`` samples per control step: the LSTM was trained on the envelope at
  ``T / block`` Hz).
"""

from __future__ import annotations

from torch import nn

from nablafx.controllers import StaticConditionalController, StaticController
from nablafx.core import from_config, to_config
from nablafx.errors import ConfigError
from nablafx.export.errors import UnsupportedExport
from nablafx.export.families import model_family
from nablafx.models import GrayBoxChain
from nablafx.processors import BiquadCascade, Compressor, DCOffset, Gain, Nonlinearity, PolarityInversion

#: Processors whose parameters are in physical units (Hz, ms) or that have no time scale.
RATE_FREE_PROCESSORS = (BiquadCascade, Compressor, Gain, DCOffset, PolarityInversion, Nonlinearity)
#: Controllers with no time scale (constant in time).
RATE_FREE_CONTROLLERS = (StaticController, StaticConditionalController)


def trained_rate(net: nn.Module, checkpoint_rate: int | float | None) -> int | None:
    """The rate ``net`` is meant for: the checkpoint's (its training data), else a chain's own."""
    if checkpoint_rate is not None:
        return int(checkpoint_rate)
    if isinstance(net, GrayBoxChain):
        return int(net.sample_rate)
    return None


def refusal(net: nn.Module, trained: int, requested: int, reason: str | None = None) -> str:
    """Why ``net`` cannot be exported at ``requested`` Hz, and what to do instead."""
    family = model_family(net)
    reason = reason or (
        f"a {family} net's weights are tied to its training rate (its convolutions and recurrences count "
        "samples, not seconds), so writing another rate into the artefact would make it sound wrong"
    )
    return (
        f"--sample-rate {requested}: this {family} model was trained at {trained} Hz; {reason}. "
        f"Export at {trained} Hz (leave out --sample-rate) and let the host resample, or retrain at "
        f"{requested} Hz (data at {requested} Hz)"
    )


def _rate_dependent_stages(chain: GrayBoxChain) -> list[str]:
    reasons = []
    for i, stage in enumerate(chain.stages):
        processor, controller = stage.processor, stage.controller
        where = f"stage {i} ({stage.name})"
        if not isinstance(processor, RATE_FREE_PROCESSORS):
            what = (f"its {processor.receptive_field} FIR taps are samples of an impulse response at the training rate"
                    if type(processor).__name__ == "FIRFilter" else "not known to be independent of the rate")
            reasons.append(f"{where}: {what}")
        if controller is not None and not isinstance(controller, RATE_FREE_CONTROLLERS):
            block = getattr(controller, "block_size", None)
            what = (f"a dynamic controller of {block} samples per control step (its LSTM was trained on the "
                    "envelope at that control rate)" if block else f"{type(controller).__name__} is not known "
                    "to be independent of the rate")
            reasons.append(f"{where}: {what}")
    return reasons


def rebuild_at(chain: GrayBoxChain, sample_rate: int) -> GrayBoxChain:
    """``chain`` built at ``sample_rate`` with the same weights (see module docstring); raises
    :class:`UnsupportedExport` if a stage's meaning is in samples or does not fit the rate."""
    trained = int(chain.sample_rate)
    reasons = _rate_dependent_stages(chain)
    if reasons:
        raise UnsupportedExport(refusal(chain, trained, sample_rate, "these stages cannot be converted: "
                                        + "; ".join(reasons)))
    config = to_config(chain)
    config["init_args"]["sample_rate"] = sample_rate
    try:
        rebuilt = from_config(config)
    except ConfigError as error:  # e.g. a cutoff range above the new Nyquist frequency
        raise UnsupportedExport(refusal(chain, trained, sample_rate, f"the chain does not fit {sample_rate} Hz "
                                        f"({error})")) from error
    fixed = [f"stage {i} ({stage.name}) at {stage.processor.sample_rate:g} Hz"
             for i, stage in enumerate(rebuilt.stages)
             if getattr(stage.processor, "sample_rate", sample_rate) != sample_rate]
    if fixed:  # a stage config that sets its own sample_rate
        raise UnsupportedExport(refusal(chain, trained, sample_rate, "its config fixes the rate of "
                                        + ", ".join(fixed)))
    rebuilt.load_state_dict(chain.state_dict())
    return rebuilt.train(chain.training)


def at_sample_rate(net: nn.Module, checkpoint_rate: int | float | None,
                   sample_rate: int | None) -> tuple[nn.Module, int | None]:
    """``(model, rate)`` to export for ``--sample-rate`` (None: the trained rate).

    The model is ``net`` itself, or a gray-box chain rebuilt at ``sample_rate``; anything
    else at a rate other than its training rate raises :class:`UnsupportedExport`.
    """
    trained = trained_rate(net, checkpoint_rate)
    if sample_rate is None:
        return net, trained
    if sample_rate <= 0:
        raise ConfigError(f"--sample-rate must be a positive number of Hz, got {sample_rate}")
    sample_rate = int(sample_rate)
    if trained is None or sample_rate == trained:
        return net, sample_rate
    if not isinstance(net, GrayBoxChain):
        raise UnsupportedExport(refusal(net, trained, sample_rate))
    if int(net.sample_rate) != trained:
        raise UnsupportedExport(refusal(net, trained, sample_rate, (
            f"the chain was built at sample_rate={net.sample_rate:g}, not at its data's rate, so its Hz are "
            "not the data's and cannot be carried to another rate")))
    return rebuild_at(net, sample_rate), sample_rate
