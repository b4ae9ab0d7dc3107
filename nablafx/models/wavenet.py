"""NAM-compatible WaveNet (the "A1" layout of Neural Amp Modeler), causal and streamable.

One *layer array* (channels C, condition c = the input audio, plus the knobs if any)::

    x = Conv1d(C_in -> C, 1, bias=False)(x)                 # rechannel
    for each layer (dilation d):
        z    = Conv1d(C -> M, k, dilation d)(x)             # causal, context cached as state
             + Conv1d(c -> M, 1, bias=False)(condition)     # input mixer
        post = act(z)              (M = C)    or    act(z[:C]) * sigmoid(z[C:])   (gated, M = 2C)
        x    = x + Conv1d(C -> C, 1)(post)                  # residual
        head = head + post                                  # head accumulator
    head = Conv1d(C -> head_size, 1, bias=head_bias)(head)  # head rechannel

The arrays run in sequence: array ``i + 1`` takes the residual stream ``x`` of array ``i``
and starts its head accumulator from array ``i``'s head output (so ``head_size`` of array
``i`` equals ``channels`` of array ``i + 1``). Output = ``head_scale * head`` of the last
array (``head_size`` 1). This is exactly the computation of NAM's ``WaveNet`` with
``head: null``, so a trained model exports to a ``.nam`` file that NAM's plugin loads
(:mod:`nablafx.export.nam`).

Knobs (not in NAM's plugin): with ``num_knobs > 0`` the condition is the audio plus one
constant channel per knob (``condition_size = 1 + num_knobs``), the way NAM's
parametric models feed their controls.

Presets (NAM's trainer; 4,093 samples of receptive field each, weights counted as NAM
exports them, ``head_scale`` included):

========  ==========  =========================================  =======
preset    channels    dilations                                  weights
========  ==========  =========================================  =======
standard  16 then 8   1..512 twice                               13,802
lite      12 then 6   1..64, then 128..512 + 1..512              6,554
feather   8 then 4    as lite                                    3,026
nano      4 then 2    as lite                                    842
========  ==========  =========================================  =======

``head_scale`` is a fixed constant in NAM (0.02), so here it is a parameter with
``requires_grad=False``: it counts as a weight, as in NAM, but is not trained.

The last layer's residual 1x1 of the last array feeds nothing (only its head term
reaches the output); it is kept for the weight layout and skipped in the forward pass.

Streaming: each layer caches the last ``(k - 1) * d`` samples of its input (its dilated
convolution's context) instead of re-running the receptive field, so a signal processed
in blocks of any size equals one call. The computation runs time-major with the weights
stored the way it uses them (the dilated conv and the input mixer of a layer as one
matrix over gathered taps, 1x1 convolutions as ``nn.Linear``). On streaming-sized blocks
the cost is the number of framework calls, and this form needs fewer and cheaper ones than
channel-major ``Conv1d`` calls (with ``CausalConv1d``). NAM's layout is a reshape away
(:meth:`WaveNetLayer.nam_tensors`, used by :mod:`nablafx.export.nam`).

State: a list with one tensor per layer (all arrays, in order), the cached context of its
dilated convolution, ``(batch, (k - 1) * d, channels)`` (time-major).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nablafx.core import State, StreamModule
from nablafx.models.base import check_state_entries
from nablafx.errors import ConfigError

#: Activation names as NAM writes them (``torch.nn`` class names).
ACTIVATIONS = {
    "Tanh": nn.Tanh,
    "ReLU": nn.ReLU,
    "Sigmoid": nn.Sigmoid,
    "Hardtanh": nn.Hardtanh,
    "LeakyReLU": nn.LeakyReLU,
    "SiLU": nn.SiLU,
}

_FULL = [2**n for n in range(10)]  # 1 .. 512
_SHORT = [2**n for n in range(7)]  # 1 .. 64
_LONG = [128, 256, 512] + _FULL


def _two_arrays(first: int, second: int, dilations_first: list[int], dilations_second: list[int]) -> list[dict]:
    common = {"kernel_size": 3, "activation": "Tanh", "gated": False}
    return [
        {"channels": first, "head_size": second, "dilations": dilations_first, "head_bias": False, **common},
        {"channels": second, "head_size": 1, "dilations": dilations_second, "head_bias": True, **common},
    ]


#: Layer arrays of NAM's trainer presets.
PRESETS: dict[str, list[dict]] = {
    "standard": _two_arrays(16, 8, _FULL, _FULL),
    "lite": _two_arrays(12, 6, _SHORT, _LONG),
    "feather": _two_arrays(8, 4, _SHORT, _LONG),
    "nano": _two_arrays(4, 2, _SHORT, _LONG),
}

LAYER_ARRAY_KEYS = ("channels", "head_size", "kernel_size", "dilations", "activation", "gated", "head_bias")


class WaveNetLayer(nn.Module):
    """Dilated causal conv + input mixer -> activation (optionally gated) -> residual 1x1.

    Weights are stored in the layout the computation uses (time-major, see :class:`WaveNet`):
    ``mix`` (``nn.Linear(k * C + c, M)``) is the dilated convolution and the input mixer as
    one matrix over the gathered taps ``[x(t - (k-1) d), ..., x(t - d), x(t), condition(t)]``
    (oldest tap first, as tap 0 of NAM's convolution), its bias the convolution's bias;
    ``layer1x1`` is ``nn.Linear(C, C)``. :meth:`nam_tensors` gives them back in NAM's
    ``Conv1d`` layout.
    """

    def __init__(self, channels: int, condition_size: int, kernel_size: int, dilation: int,
                 activation: str, gated: bool):
        super().__init__()
        self.channels = channels
        self.condition_size = condition_size
        self.gated = gated
        self.kernel_size = kernel_size
        self.dilation = dilation
        mid = 2 * channels if gated else channels
        self.mix = nn.Linear(kernel_size * channels + condition_size, mid)
        self.activation = ACTIVATIONS[activation]()
        self.layer1x1 = nn.Linear(channels, channels)
        with torch.no_grad():  # NAM's initialisation: each Conv1d's own fan-in
            conv_bound = 1 / math.sqrt(kernel_size * channels)
            self.mix.weight[:, : kernel_size * channels].uniform_(-conv_bound, conv_bound)
            self.mix.bias.uniform_(-conv_bound, conv_bound)
            mixer_bound = 1 / math.sqrt(condition_size)
            self.mix.weight[:, kernel_size * channels :].uniform_(-mixer_bound, mixer_bound)

    @property
    def context(self) -> int:
        """Past input samples the dilated convolution needs: ``(k - 1) * d``."""
        return (self.kernel_size - 1) * self.dilation

    def nam_tensors(self) -> list[Tensor]:
        """Conv weight ``(M, C, k)``, conv bias, input-mixer weight ``(M, c, 1)``, 1x1 weight, 1x1 bias."""
        mid, taps = self.mix.out_features, self.kernel_size * self.channels
        conv = self.mix.weight[:, :taps].reshape(mid, self.kernel_size, self.channels).permute(0, 2, 1)
        mixer = self.mix.weight[:, taps:].unsqueeze(-1)
        return [conv, self.mix.bias, mixer, self.layer1x1.weight.unsqueeze(-1), self.layer1x1.bias]

    def forward(self, x: Tensor, condition: Tensor, state: Tensor | None, need_residual: bool = True,
                channel_major: bool = False) -> tuple[Tensor | None, Tensor, Tensor]:
        """``x`` ``(batch, time, C)``, ``condition`` ``(batch, time, c)``, ``state``
        ``(batch, context, C)``; returns ``(residual output or None, post-activation, new state)``.
        With ``channel_major`` every tensor has its time and channel axes swapped and the mixing
        products run as dilated ``Conv1d`` kernels (see :attr:`WaveNet.channel_major`).

        ``state=None`` is the *valid* form: ``x`` is its own history and the outputs are the
        ``time - context`` samples that have it all (aligned with the end of ``x``)."""
        time = 2 if channel_major else 1
        if state is None:  # valid form: the outputs are the last `length` samples
            history = x
            length = x.shape[time] - self.context
            x, condition = _last(x, length, time), _last(condition, length, time)
        else:
            history = torch.cat([state, x], dim=time)
            length = x.shape[time]
        if channel_major:
            conv, conv_bias, mixer, _, _ = self.nam_tensors()
            z = F.conv1d(history, conv, conv_bias, dilation=self.dilation) + F.conv1d(condition, mixer)
        else:
            taps = [history[:, j * self.dilation : j * self.dilation + length] for j in range(self.kernel_size)]
            z = self.mix(torch.cat(taps + [condition], dim=-1))
        channel = 1 if channel_major else -1
        if self.gated:
            value, gate = z.split(self.channels, dim=channel)
            post = self.activation(value) * torch.sigmoid(gate)
        else:
            post = self.activation(z)
        out = x + pointwise(self.layer1x1, post, channel_major) if need_residual else None
        return out, post, _last(history, self.context, time)


def _last(v: Tensor, count: int, time: int) -> Tensor:
    """The last ``count`` samples of ``v`` along axis ``time`` (1 or 2)."""
    start = v.shape[time] - count
    return v[:, start:] if time == 1 else v[:, :, start:]


def pointwise(linear: nn.Linear, v: Tensor, channel_major: bool) -> Tensor:
    """A 1x1 convolution held as ``nn.Linear``, on time-major or channel-major ``v``."""
    if channel_major:
        return F.conv1d(v, linear.weight.unsqueeze(-1), linear.bias)
    return linear(v)


class LayerArray(nn.Module):
    """Rechannel, a stack of :class:`WaveNetLayer`, and a head rechannel (see module docstring).

    The 1x1 rechannels are ``nn.Linear`` (time-major); NAM's ``Conv1d(.., 1)`` weights are the
    same matrices with a trailing axis of one.
    """

    def __init__(self, input_size: int, condition_size: int, channels: int, head_size: int, kernel_size: int,
                 dilations: list[int], activation: str = "Tanh", gated: bool = False, head_bias: bool = False):
        super().__init__()
        self.rechannel = nn.Linear(input_size, channels, bias=False)
        self.layers = nn.ModuleList(
            WaveNetLayer(channels, condition_size, kernel_size, d, activation, gated) for d in dilations
        )
        self.head_rechannel = nn.Linear(channels, head_size, bias=head_bias)

    def forward(self, x: Tensor, condition: Tensor, head: Tensor | None, states: list, last_array: bool,
                channel_major: bool = False) -> tuple[Tensor, Tensor | None, list]:
        time = 2 if channel_major else 1
        x = pointwise(self.rechannel, x, channel_major)
        new_states = []
        last = len(self.layers) - 1
        for n, (layer, state) in enumerate(zip(self.layers, states)):
            x, post, new_state = layer(x, condition, state, need_residual=not (last_array and n == last),
                                       channel_major=channel_major)
            if head is not None and state is None:  # valid form: every layer shortens the signal
                head = _last(head, post.shape[time], time)
            head = post if head is None else head + post
            new_states.append(new_state)
        return pointwise(self.head_rechannel, head, channel_major), x, new_states


def _check_layer_arrays(layers: list[dict]) -> None:
    if not layers:
        raise ConfigError("WaveNet needs at least one layer array")
    for i, spec in enumerate(layers):
        missing = [key for key in ("channels", "head_size", "kernel_size", "dilations") if key not in spec]
        unknown = sorted(set(spec) - set(LAYER_ARRAY_KEYS))
        if missing or unknown:
            raise ConfigError(
                f"WaveNet layer array {i}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}; "
                f"keys are {', '.join(LAYER_ARRAY_KEYS)}"
            )
        activation = spec.get("activation", "Tanh")
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"WaveNet layer array {i}: unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        if not spec["dilations"]:
            raise ConfigError(f"WaveNet layer array {i} has no layers (empty dilations)")
        if i + 1 < len(layers) and spec["head_size"] != layers[i + 1]["channels"]:
            raise ConfigError(
                f"WaveNet layer array {i}: head_size {spec['head_size']} must equal the channels of array {i + 1} "
                f"({layers[i + 1]['channels']}): the next array adds its layer outputs to this head"
            )
    if layers[-1]["head_size"] != 1:
        raise ConfigError(
            f"WaveNet: the last layer array must have head_size 1 (mono output), got {layers[-1]['head_size']}"
        )


class WaveNet(StreamModule):
    """NAM-compatible WaveNet (see module docstring); configs ``cfg/model/wavenet/wavenet-<preset>.yaml``.

    Args:
        num_knobs: device controls, fed as extra constant condition channels.
        preset: ``standard``, ``lite``, ``feather`` or ``nano`` (NAM's presets); ignored when
            ``layers`` is given.
        layers: explicit layer arrays, dicts with keys ``channels``, ``head_size``,
            ``kernel_size``, ``dilations`` and optionally ``activation`` (``Tanh``),
            ``gated`` (False), ``head_bias`` (False).
        head_scale: fixed output scale (NAM: 0.02).
    """

    def __init__(self, num_knobs: int = 0, preset: str = "standard", layers: list[dict] | None = None,
                 head_scale: float = 0.02):
        super().__init__()
        if num_knobs < 0:
            raise ConfigError(f"num_knobs must be >= 0, got {num_knobs}")
        if layers is None:
            if preset not in PRESETS:
                raise ConfigError(f"unknown WaveNet preset {preset!r}; valid: {', '.join(PRESETS)}")
            layers = PRESETS[preset]
        layers = copy.deepcopy([dict(spec) for spec in layers])
        _check_layer_arrays(layers)
        self.num_knobs = num_knobs
        self.condition_size = 1 + num_knobs
        self.layer_specs = [
            {"activation": "Tanh", "gated": False, "head_bias": False, **spec,
             "dilations": [int(d) for d in spec["dilations"]]}
            for spec in layers
        ]
        input_sizes = [1] + [spec["channels"] for spec in self.layer_specs[:-1]]
        self.arrays = nn.ModuleList(
            LayerArray(size, self.condition_size, **spec) for size, spec in zip(input_sizes, self.layer_specs)
        )
        self.head_scale = nn.Parameter(torch.tensor(float(head_scale)), requires_grad=False)
        #: Compute channel-major, every mixing product a ``Conv1d`` (NAM's own form). ONNX
        #: runtimes run their dilated ``Conv`` kernel faster than the gathered taps of the
        #: default time-major form, so the ONNX exporter sets this on its copy; the state is
        #: then ``(batch, channels, context)`` per layer. Same weights, same outputs.
        self.channel_major = False

    @property
    def receptive_field(self) -> int:
        return 1 + sum(layer.context for array in self.arrays for layer in array.layers)

    @property
    def num_layers(self) -> int:
        return sum(len(array.layers) for array in self.arrays)

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        self.check_input(x, knobs)
        if x.shape[1] != 1:
            raise ConfigError(f"WaveNet is a mono model; got {x.shape[1]} audio channels")
        if state is None:
            state = [x.new_zeros((x.shape[0], layer.channels, layer.context) if self.channel_major
                                 else (x.shape[0], layer.context, layer.channels))
                     for array in self.arrays for layer in array.layers]
        check_state_entries(self, state, self.num_layers, "tensors (one per layer)")
        return self._run(x, knobs, state)

    def forward_from(self, x: Tensor, knobs: Tensor | None, start: int) -> Tensor:
        """Outputs ``start:`` of a call from silence; from ``start >= receptive_field - 1`` on they
        need no zero history, so only those are computed (the valid form of every layer)."""
        self.check_input(x, knobs)
        skip = start - (self.receptive_field - 1)
        if skip < 0:
            return super().forward_from(x, knobs, start)
        return self._run(x[..., skip:], knobs, [None] * self.num_layers)[0]

    def _run(self, x: Tensor, knobs: Tensor | None, state: list) -> tuple[Tensor, State]:
        # Time-major by default: every 1x1 convolution is one matrix product, and the dilated
        # conv and input mixer of a layer one product over gathered taps (see the module docstring).
        channel_major = self.channel_major
        audio = x if channel_major else x.transpose(1, 2)
        condition = audio
        if self.num_knobs:
            if channel_major:
                condition = torch.cat([audio, knobs.to(x).unsqueeze(-1).expand(-1, -1, x.shape[-1])], dim=1)
            else:
                condition = torch.cat([audio, knobs.to(x).unsqueeze(1).expand(-1, x.shape[-1], -1)], dim=2)
        head, y, new_states, start = None, audio, [], 0
        last = len(self.arrays) - 1
        for i, array in enumerate(self.arrays):
            count = len(array.layers)
            head, y, array_states = array(y, condition, head, list(state[start : start + count]),
                                          last_array=i == last, channel_major=channel_major)
            new_states.extend(array_states)
            start += count
        y = self.head_scale * head
        return (y if channel_major else y.transpose(1, 2)), new_states
