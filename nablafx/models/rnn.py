"""Recurrent effect model: audio (+ conditioning) -> LSTM/GRU -> Linear -> (+ input) -> tanh.

Per sample t (Wright et al., "Real-time guitar amplifier emulation with deep learning",
2020; NablAFx, arXiv 2502.11668)::

    i_t = [x_t, (knobs), (c_t)]              # conditioning appended to the audio
    h_t = LSTM/GRU(i_t, h_{t-1})             # self.rnn, one layer, PyTorch layout
    y_t = tanh(W h_t + b (+ x_t))            # self.head; residual and tanh optional

Conditioning: ``none``; ``knobs`` (the knob values appended to every sample, as in
GuitarML/AIDA-X); ``tvc``, a time-varying 16-dim sequence c_t from a block-rate LSTM on
the peak |x| per control block (+ knobs), held per sample (TVFiLM-style, causal: the
value of control block b comes from blocks before b, see
:mod:`nablafx.controllers.block_rate`; the reference used block b itself).

The attribute names ``rnn`` (``nn.LSTM``/``nn.GRU``, ``batch_first=True``) and ``head``
(``nn.Linear(H, 1)``) are read by the exporters (NAM, RTNeural/AIDA-X); keep them.

State: the ``nn.LSTM`` state ``(h, c)`` (each ``(1, batch, H)``) or the ``nn.GRU`` state
``h``; with ``tvc``, ``(rnn_state, control_state)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from nablafx.core import State, StreamModule
from nablafx.controllers.block_rate import BlockRateLSTM, block_sequence
from nablafx.errors import ConfigError

RNN_CONDITIONING = ("none", "knobs", "tvc")
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RNN(StreamModule):
    """One-layer LSTM/GRU effect model (see module docstring); configs ``lstm-32``, ``lstm-96``.

    Args:
        num_knobs: device controls (needs ``conditioning`` ``knobs`` or ``tvc``).
        hidden_size: H.
        cell: ``lstm`` or ``gru``.
        residual: add the input sample to the head's output (learn the difference).
        output_tanh: squash the output to (-1, 1).
        conditioning: ``none``, ``knobs`` or ``tvc``.
        control_block_size, control_size: block length and width of the ``tvc`` sequence.
    """

    def __init__(
        self,
        num_knobs: int = 0,
        hidden_size: int = 32,
        cell: Literal["lstm", "gru"] = "lstm",
        residual: bool = False,
        output_tanh: bool = True,
        conditioning: Literal["none", "knobs", "tvc"] = "none",
        control_block_size: int = 128,
        control_size: int = 16,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"unknown cell {cell!r}; valid: {', '.join(CELLS)}")
        if conditioning not in RNN_CONDITIONING:
            raise ConfigError(f"unknown conditioning {conditioning!r}; valid: {', '.join(RNN_CONDITIONING)}")
        if conditioning == "knobs" and num_knobs < 1:
            raise ConfigError("conditioning='knobs' appends knob values to the input and needs num_knobs >= 1")
        if conditioning == "none" and num_knobs > 0:
            raise ConfigError(
                f"num_knobs={num_knobs} needs a way to feed the knobs in; use conditioning='knobs' or 'tvc'"
            )
        self.num_knobs = num_knobs
        self.conditioning = conditioning
        self.residual = residual
        self.output_tanh = output_tanh
        self.control = (
            BlockRateLSTM(1, num_knobs, control_size, control_block_size, pooling="max_abs")
            if conditioning == "tvc"
            else None
        )
        input_size = 1 + (num_knobs if conditioning == "knobs" else 0) + (control_size if conditioning == "tvc" else 0)
        self.rnn = CELLS[cell](input_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    @property
    def receptive_field(self) -> int:
        return 0  # recurrent: unbounded

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_input(x, knobs)
        if x.shape[1] != 1:
            raise ConfigError(f"RNN is a mono model; got {x.shape[1]} audio channels")
        batch, _, length = x.shape
        if state is None:
            rnn_state, control_state = None, None
        elif self.control is not None:
            rnn_state, control_state = state
        else:
            rnn_state, control_state = state, None

        audio = x.transpose(1, 2)  # (batch, time, 1)
        inputs = [audio]
        if self.conditioning == "knobs":
            inputs.append(knobs.to(x).unsqueeze(1).expand(batch, length, -1))
        if self.control is not None:
            sequence, control_state = block_sequence(self.control, x, knobs, control_state)
            inputs.append(sequence.per_sample(x).transpose(1, 2))
        hidden, rnn_state = self.rnn(torch.cat(inputs, dim=-1) if len(inputs) > 1 else audio, rnn_state)
        y = self.head(hidden)
        if self.residual:
            y = y + audio
        if self.output_tanh:
            y = y.tanh()
        new_state = (rnn_state, control_state) if self.control is not None else rnn_state
        return y.transpose(1, 2), new_state
