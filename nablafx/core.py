"""The one calling convention shared by every model and block, and plain-data configs.

Every model, chain, processor and controller is called as::

    y, state = module(x, knobs=None, state=None)

``x`` is audio ``(batch, channels, time)``; ``knobs`` are device controls
``(batch, n_knobs)`` in [0, 1]; ``state=None`` starts from silence and passing the
returned state back continues the signal exactly where it stopped, so processing in
blocks of any size equals processing in one call.

Modules also remember the arguments they were built with (:func:`to_config`), so a
checkpoint can rebuild its model from plain data, without unpickling objects.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import itertools
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from nablafx.errors import ConfigError

State = Any  # a tensor, or a tuple/list/dict of states, or None


class Configurable:
    """Records the arguments of ``__init__`` so :func:`to_config` can describe the object.

    The outermost constructor wins: a subclass calling ``super().__init__`` does not
    overwrite what its own signature recorded.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__dict__["__init__"]
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            if not hasattr(self, "_init_args"):
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop(next(iter(signature.parameters)))  # self
                for name, param in signature.parameters.items():
                    if param.kind is inspect.Parameter.VAR_KEYWORD:
                        arguments.update(arguments.pop(name, {}))
                    elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                        raise TypeError(f"{cls.__name__}: *args cannot be recorded in a config")
                object.__setattr__(self, "_init_args", arguments)
            init(self, *args, **kw)

        cls.__init__ = recording_init


def to_config(obj: Any) -> Any:
    """Describe ``obj`` as plain data: ``{"class_path": ..., "init_args": {...}}``, recursively."""
    if isinstance(obj, Configurable):
        return {
            "class_path": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "init_args": {k: to_config(v) for k, v in obj._init_args.items()},
        }
    if isinstance(obj, (list, tuple)):
        return [to_config(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_config(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"cannot describe {type(obj).__name__} as a config; pass plain values or nablafx modules"
    )


def from_config(config: Any) -> Any:
    """Inverse of :func:`to_config`: build objects from ``class_path``/``init_args`` dicts."""
    if isinstance(config, dict) and "class_path" in config:
        module_name, _, class_name = config["class_path"].rpartition(".")
        if not module_name.startswith("nablafx"):
            # Configs come from checkpoints; only build our own classes from them.
            raise ConfigError(f"refusing to build {config['class_path']!r}: not a nablafx class")
        cls = getattr(importlib.import_module(module_name), class_name)
        init_args = {k: from_config(v) for k, v in config.get("init_args", {}).items()}
        return cls(**init_args)
    if isinstance(config, list):
        return [from_config(v) for v in config]
    if isinstance(config, dict):
        return {k: from_config(v) for k, v in config.items()}
    return config


class StreamModule(Configurable, nn.Module):
    """Base class of every model and block: ``y, state = module(x, knobs, state)``.

    Subclasses set ``num_knobs`` and implement :meth:`forward`. ``receptive_field``
    (samples of input that one output sample depends on; 1 for memoryless blocks, 0
    when unbounded, as in recurrent nets) and ``latency`` (samples of delay the model
    introduces; 0 for causal models) describe the model to plots, benchmarks and export.
    """

    num_knobs: int = 0
    latency: int = 0

    @property
    def receptive_field(self) -> int:
        return 1

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None):
        raise NotImplementedError

    def forward_from(self, x: Tensor, knobs: Tensor | None, start: int) -> Tensor:
        """Output samples ``start:`` of ``self(x, knobs)`` (a call from silence).

        Training scores only the samples after each window's context; a model with a bounded
        receptive field may override this to skip computing the unscored ones.
        """
        y, _ = self(x, knobs)
        return y[..., start:]

    def check_input(self, x: Tensor, knobs: Tensor | None) -> None:
        """Raise a clear error when audio or knobs do not fit this model."""
        if x.dim() != 3:
            raise ConfigError(
                f"{type(self).__name__} expects audio shaped (batch, channels, time), got {tuple(x.shape)}"
            )
        if self.num_knobs == 0:
            if knobs is not None and knobs.numel() > 0:
                raise ConfigError(
                    f"{type(self).__name__} was built with num_knobs=0 but got knobs of shape "
                    f"{tuple(knobs.shape)}; build the model with num_knobs={knobs.shape[-1]} or drop the knobs"
                )
            return
        if knobs is None:
            raise ConfigError(
                f"{type(self).__name__} needs {self.num_knobs} knob value(s) in [0, 1] but got none"
            )
        if knobs.dim() != 2 or knobs.shape[-1] != self.num_knobs or knobs.shape[0] != x.shape[0]:
            raise ConfigError(
                f"{type(self).__name__} expects knobs shaped (batch={x.shape[0]}, {self.num_knobs}), "
                f"got {tuple(knobs.shape)}"
            )


def map_state(fn: Callable[[Tensor], Tensor], state: State) -> State:
    """Apply ``fn`` to every tensor of a nested state."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple):
        return tuple(map_state(fn, s) for s in state)
    if isinstance(state, list):
        return [map_state(fn, s) for s in state]
    if isinstance(state, dict):
        return {k: map_state(fn, s) for k, s in state.items()}
    raise TypeError(f"state holds a {type(state).__name__}; states are tensors, tuples, lists or dicts")


def detach_state(state: State) -> State:
    """Cut the gradient path through a carried state (truncated back-propagation through time)."""
    return map_state(Tensor.detach, state)


@torch.no_grad()
def feed_blocks(process: Callable[[Any], Any], x, block_sizes: int | Sequence[int]):
    """``process`` applied to consecutive blocks of ``x`` along its last axis, the outputs joined
    (a tensor or a NumPy array, as ``process`` returns): what a host does with a stream.
    ``block_sizes`` is one size, or sizes taken in turn (a host whose buffers vary). Runs
    without autograd: streaming is inference."""
    sizes = (block_sizes,) if isinstance(block_sizes, int) else tuple(block_sizes)
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"block sizes must be >= 1 samples, got {list(sizes)}")
    outputs, start = [], 0
    for size in itertools.cycle(sizes):
        if start >= x.shape[-1]:
            break
        outputs.append(process(x[..., start : start + size]))
        start += size
    if not outputs:
        return x[..., :0].clone() if isinstance(x, Tensor) else x[..., :0].copy()
    return torch.cat(outputs, dim=-1) if isinstance(outputs[0], Tensor) else np.concatenate(outputs, axis=-1)


def process_in_blocks(
    model: nn.Module, x: Tensor, knobs: Tensor | None = None, block_size: int = 4096, state: State = None
) -> tuple[Tensor, State]:
    """Stream ``x`` through ``model`` in blocks of ``block_size`` samples, carrying the state."""
    carried = state

    def step(block: Tensor) -> Tensor:
        nonlocal carried
        y, carried = model(block, knobs, carried)
        return y

    return feed_blocks(step, x, block_size), carried
