"""Conditioning methods for the black-box models: FiLM, TFiLM, TTFiLM, TVFiLM.

A method has two parts, both built by :class:`Conditioning` from its name:

- a shared *encoder* run once per call on the audio and knobs, giving a context:
  FiLM embeds the knobs with an MLP; TVFiLM runs one block-rate LSTM on the input level;
  TFiLM/TTFiLM pass the knobs through;
- one *modulator* per model block, applied to that block's features
  ``h -> gamma * h + beta`` (Perez et al., "FiLM", AAAI 2018) with gamma/beta from the context.

Methods (NablAFx, arXiv 2502.11668 / 2502.14405; control block 128 samples = 375 Hz at 48 kHz):

- ``film``: static in time. knobs -> MLP(3 x 32) -> per block Linear(32 -> 2C); features
  normalised by BatchNorm without affine first. Needs knobs.
- ``tfilm`` (Birnbaum et al., NeurIPS 2019): per block, max-pool the features per control
  block (+ knobs) -> LSTM(hidden 2C), whose output is gamma, beta.
- ``ttfilm`` (tiny TFiLM): per block, max-pool -> Linear(C -> 4) (+ knobs) -> LSTM(4) ->
  MLP 4 -> 16 -> 32 -> 2C.
- ``tvfilm``: ONE shared LSTM(32) on the peak |input| per control block (+ knobs); each
  block only has a Linear(32 -> 2C).

Without knobs, tfilm/ttfilm/tvfilm modulate from the signal itself (non-parametric).

Differences from the reference implementation, on purpose:

- Block-rate modulation is causal: control block ``b`` is modulated by the LSTM output of
  blocks ``0 .. b-1`` (see :mod:`nablafx.controllers.block_rate`); the reference used block
  ``b`` itself (127 samples of look-ahead). Parameter counts are unchanged.
- TTFiLM: the reference ended its adaptor with a ReLU, so gamma and beta could never be
  negative and a unit could die at gamma = 0; the last layer here is linear (same count).

BatchNorm and streaming: in training mode FiLM's BatchNorm normalises with the statistics
of the current batch and chunk, so a chunked signal is normalised differently from one
call. In eval mode the running statistics are used, BatchNorm is a fixed per-channel
affine map, and streaming equals one call. Stream (and export) in eval mode.
"""

from __future__ import annotations

from torch import Tensor, nn

from nablafx.controllers.block_rate import BlockRateLSTM, BlockSequence, block_sequence, mlp
from nablafx.errors import ConfigError

CONDITIONING_METHODS = ("none", "film", "tfilm", "ttfilm", "tvfilm")
FILM_EMBEDDING = 32  # width of FiLM's knob MLP
TVFILM_CONTROL = 32  # hidden size of TVFiLM's shared LSTM
TTFILM_BOTTLENECK = 4
TTFILM_READOUT = (16, 32)  # hidden widths of TTFiLM's adaptor, then 2C


class FiLM(nn.Module):
    """Static modulation: ``gamma, beta = Linear(embedding)``; ``y = gamma * BN(h) + beta``."""

    has_state = False

    def __init__(self, num_features: int, embedding_size: int = FILM_EMBEDDING):
        super().__init__()
        self.norm = nn.BatchNorm1d(num_features, affine=False)
        self.adaptor = nn.Linear(embedding_size, 2 * num_features)

    def forward(self, h: Tensor, embedding: Tensor, state=None) -> tuple[Tensor, None]:
        gamma, beta = self.adaptor(embedding).unsqueeze(-1).chunk(2, dim=1)
        return gamma * self.norm(h) + beta, None


class TemporalFiLM(nn.Module):
    """Signal-adaptive modulation from this block's own features (TFiLM, or TTFiLM when tiny).

    gamma, beta of control block b = LSTM(maxpool(h over block b-1) (+ knobs)); tiny adds
    a Linear(C -> 4) bottleneck before and an MLP 4 -> 16 -> 32 -> 2C after an LSTM(4).
    """

    has_state = True

    def __init__(self, num_features: int, num_knobs: int, block_size: int = 128, tiny: bool = False):
        super().__init__()
        if tiny:
            self.control = BlockRateLSTM(
                num_features,
                num_knobs,
                hidden_size=TTFILM_BOTTLENECK,
                block_size=block_size,
                bottleneck=TTFILM_BOTTLENECK,
                readout=(*TTFILM_READOUT, 2 * num_features),
            )
        else:
            self.control = BlockRateLSTM(num_features, num_knobs, 2 * num_features, block_size)

    def forward(self, h: Tensor, knobs: Tensor | None, state=None) -> tuple[Tensor, tuple]:
        gamma_beta, state = block_sequence(self.control, h, knobs, state)
        return gamma_beta.modulate(h), state


class TVFiLM(nn.Module):
    """Per-block part of TVFiLM: ``gamma, beta = Linear(32 -> 2C)`` of the shared control sequence."""

    has_state = False

    def __init__(self, num_features: int, control_size: int = TVFILM_CONTROL):
        super().__init__()
        self.adaptor = nn.Linear(control_size, 2 * num_features)

    def forward(self, h: Tensor, control: BlockSequence, state=None) -> tuple[Tensor, None]:
        return control.map(self.adaptor).modulate(h), None


class Conditioning(nn.Module):
    """A conditioning method by name: the shared encoder, and a factory of per-block modulators.

    ``forward(audio, knobs, state) -> (context, state)`` runs the encoder once per call;
    each block's modulator then does ``h, block_state = modulator(h, context, block_state)``.
    """

    def __init__(self, method: str = "none", num_knobs: int = 0, control_block_size: int = 128):
        super().__init__()
        if method not in CONDITIONING_METHODS:
            raise ConfigError(
                f"unknown conditioning {method!r}; valid: {', '.join(CONDITIONING_METHODS)}"
            )
        if num_knobs < 0:
            raise ConfigError(f"num_knobs must be >= 0, got {num_knobs}")
        if method == "film" and num_knobs == 0:
            raise ConfigError(
                "conditioning='film' modulates from knobs only and needs num_knobs >= 1; "
                "for a model without knobs use 'none', or 'tfilm'/'ttfilm'/'tvfilm' (signal-adaptive)"
            )
        if method == "none" and num_knobs > 0:
            raise ConfigError(
                f"num_knobs={num_knobs} needs a conditioning method to feed the knobs in; "
                "use 'film', 'tfilm', 'ttfilm' or 'tvfilm'"
            )
        self.method = method
        self.num_knobs = num_knobs
        self.control_block_size = control_block_size
        if method == "film":
            self.encoder = mlp([num_knobs, FILM_EMBEDDING, FILM_EMBEDDING, FILM_EMBEDDING], final_activation=True)
        elif method == "tvfilm":
            self.encoder = BlockRateLSTM(
                1, num_knobs, TVFILM_CONTROL, control_block_size, pooling="max_abs"
            )
        else:
            self.encoder = None

    @property
    def has_state(self) -> bool:
        """Whether the shared encoder carries state between calls (TVFiLM's LSTM)."""
        return self.method == "tvfilm"

    @property
    def time_varying(self) -> bool:
        """Whether gamma/beta follow the signal (and so the receptive field is unbounded)."""
        return self.method in ("tfilm", "ttfilm", "tvfilm")

    def modulator(self, num_features: int) -> nn.Module | None:
        """A fresh per-block modulator for ``num_features`` channels (None for 'none')."""
        if self.method == "film":
            return FiLM(num_features)
        if self.method in ("tfilm", "ttfilm"):
            return TemporalFiLM(
                num_features, self.num_knobs, self.control_block_size, tiny=self.method == "ttfilm"
            )
        if self.method == "tvfilm":
            return TVFiLM(num_features)
        return None

    def forward(self, audio: Tensor, knobs: Tensor | None, state=None):
        if self.method == "film":
            return self.encoder(knobs.to(audio)), None
        if self.method == "tvfilm":
            return block_sequence(self.encoder, audio, knobs, state)
        return (knobs if self.num_knobs else None), None


def run_modulator(modulator: nn.Module | None, h: Tensor, context, state):
    """Apply an optional modulator (identity when None)."""
    if modulator is None:
        return h, None
    return modulator(h, context, state)


def split_block_state(state, modulator: nn.Module | None):
    """A block's state is its own state, or ``(own, modulator_state)`` when the modulator has state."""
    if state is None:
        return None, None
    if modulator is not None and modulator.has_state:
        return state
    return state, None


def join_block_state(own, modulator_state, modulator: nn.Module | None):
    if modulator is not None and modulator.has_state:
        return (own, modulator_state)
    return own
