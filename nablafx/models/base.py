"""Plumbing shared by the block-stack models (TCN, GCN, S4): conditioning, state layout, checks.

State layout of a block-stack model (plain data, so it can be carried, detached and
exported): a list with one entry per block, followed by one more entry -- the shared
encoder's state -- only when the conditioning method has one (TVFiLM). A block's entry
is its own state (e.g. the cached convolution context), or ``(own, modulator_state)``
when its modulator carries state (TFiLM, TTFiLM).

:func:`check_state_entries` is the one top-level state check of every model family that
carries a list of per-part states (block stacks here, :class:`~nablafx.models.WaveNet`,
:class:`~nablafx.models.GrayBoxChain`).
"""

from __future__ import annotations

from torch import Tensor, nn

from nablafx.core import State, StreamModule
from nablafx.models.conditioning import Conditioning
from nablafx.errors import ConfigError


def check_state_entries(model: nn.Module, state: State, expected: int, entries: str = "entries") -> None:
    """Refuse a carried ``state`` that is not a list/tuple of ``expected`` entries.

    A state from another model (or another size of the same one) would otherwise fail deep
    inside a layer, or not at all: ``zip`` over a short list silently drops the last parts.
    ``entries`` describes one entry for the message, e.g. ``"tensors (one per layer)"``.
    """
    if isinstance(state, (list, tuple)) and len(state) == expected:
        return
    got = f"{len(state)}" if isinstance(state, (list, tuple)) else f"a {type(state).__name__}"
    raise ConfigError(
        f"{type(model).__name__} expects a state list of {expected} {entries}, got {got}; "
        "pass back the state this model returned (or None to start from silence)"
    )


class ConditionedNet(StreamModule):
    """A mono effect model made of blocks, each optionally modulated by one conditioning method."""

    def _setup_conditioning(self, num_knobs: int, conditioning: str, control_block_size: int) -> None:
        self.num_knobs = num_knobs
        self.conditioning = Conditioning(conditioning, num_knobs, control_block_size)

    def unpack_state(self, state: State, num_blocks: int) -> tuple[list, State]:
        if state is None:
            return [None] * num_blocks, None
        check_state_entries(self, state, num_blocks + int(self.conditioning.has_state))
        encoder_state = state[num_blocks] if self.conditioning.has_state else None
        return list(state[:num_blocks]), encoder_state

    def pack_state(self, block_states: list, encoder_state: State) -> list:
        return block_states + [encoder_state] if self.conditioning.has_state else block_states

    def check_input(self, x: Tensor, knobs: Tensor | None) -> None:
        super().check_input(x, knobs)
        if x.shape[1] != 1:
            raise ConfigError(f"{type(self).__name__} is a mono model; got {x.shape[1]} audio channels")


class DilatedConvNet(ConditionedNet):
    """A block stack whose blocks each hold a dilated causal ``conv`` (TCN, GCN)."""

    @property
    def conv_receptive_field(self) -> int:
        """Receptive field of the convolution path alone: ``1 + sum (k - 1) g**n``."""
        return 1 + sum(block.conv.context for block in self.blocks)

    @property
    def receptive_field(self) -> int:
        """The convolution path's receptive field; 0 (unbounded) when an LSTM modulates the features."""
        return 0 if self.conditioning.time_varying else self.conv_receptive_field
