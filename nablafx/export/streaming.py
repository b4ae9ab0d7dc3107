"""The streaming step with its state as explicit tensors, traced into a graph.

Every nablafx model streams as ``y, state = net(x, knobs, state)`` with a nested state
(lists/tuples of tensors). Plugins embedding libtorch or ONNX Runtime want one call per
host buffer with the state as plain inputs and outputs, so :class:`StreamingStep` flattens
the state into a fixed list of tensors::

    out, s_0', ..., s_n' = step(block, [knobs,] s_0, ..., s_n)

``block`` is ``(1, 1, L)`` for any ``L >= 1``; ``knobs`` ``(1, num_knobs)`` in [0, 1];
the initial state is all zeros (silence), which :func:`initial_state` builds and the
export checks confirm (a model whose ``state=None`` is not zero state fails the check).

Why tracing and not scripting: ``torch.jit.script`` would need every model written in
TorchScript's subset (no ``Any``-typed nested states, no ``functools.wraps`` config
recording, no Python containers of optional tensors), i.e. a second copy of every model.
Tracing records the tensor operations of the real model; sizes are traced symbolically,
so one graph serves every block length as long as the model's Python code does not branch
on data or on the stream position. Block-rate control does; it is written in TorchScript's
subset and compiled as it is (:mod:`nablafx.controllers.block_rate`, shared by the TFiLM
family and the gray-box dynamic controllers), S4 layers get their block operators fixed
(:class:`nablafx.models.s4.FrozenBlockSSM`), and static biquad cascades and the SIREN lookup
compile their own streaming forms (:meth:`BiquadCascade.compile_static_form`,
:meth:`MLPNonlinearity.compile_table`); the export check streams several block sizes to
confirm every artefact.
"""

from __future__ import annotations

import copy
import io
import time
import warnings
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from nablafx.export.check import check_knobs
from nablafx.controllers.block_rate import BlockRateLSTM
from nablafx.models.s4 import DiagonalSSM, FrozenBlockSSM
from nablafx.processors.biquads import BiquadCascade
from nablafx.processors.nonlinearities import MLPNonlinearity

#: Block length the graph is traced with; any length works afterwards (the code path of this
#: length is the one recorded, see :func:`fastest_piece`).
TRACE_BLOCK = 64

#: Input amplitude up to which an exported SIREN nonlinearity reads a precomputed table
#: (:class:`~nablafx.processors.nonlinearities.TableNonlinearity`): full scale driven 24 dB, 128 kB of
#: table. Beyond it the network runs on the samples concerned -- the same curve, only slower.
MLP_TABLE_LIMIT = 16.0


class StateLayout(NamedTuple):
    """How a nested state flattens: the pytree spec and one example leaf per slot (None stays None)."""

    spec: TreeSpec
    leaves: list


def present_leaves(state) -> list[Tensor]:
    """The tensors of a nested state in flattening order, without its ``None`` leaves."""
    return [leaf for leaf in tree_flatten(state)[0] if leaf is not None]


class StreamingStep(nn.Module):
    """``net`` as ``step(block, [knobs,] *state) -> (out, *state)`` with a flat tensor state.

    Args:
        net: the model, in eval mode.
        state_spec: the layout of ``net``'s nested state (from :func:`initial_state`); its
            ``None`` leaves (stages without state, e.g. static controllers) are not inputs.
        takes_knobs: whether ``knobs`` is an input. TorchScript keeps it always (a
            ``(1, 0)`` tensor for knob-free models) so every artefact has one signature;
            ONNX drops it when the model has no knobs, since ONNX prunes unused inputs.
    """

    def __init__(self, net: nn.Module, state_spec: StateLayout, takes_knobs: bool):
        super().__init__()
        self.net = net
        self.state_spec = state_spec
        self.takes_knobs = takes_knobs

    def forward(self, block: Tensor, *inputs: Tensor) -> tuple[Tensor, ...]:
        knobs, state = (inputs[0], inputs[1:]) if self.takes_knobs else (None, inputs)
        if self.net.num_knobs == 0:
            knobs = None
        tensors = iter(state)
        leaves = [None if leaf is None else next(tensors) for leaf in self.state_spec.leaves]
        y, new_state = self.net(block, knobs, tree_unflatten(leaves, self.state_spec.spec))
        return (y, *present_leaves(new_state))


def example_knobs(num_knobs: int) -> Tensor:
    """Knob values for tracing, ``(1, num_knobs)`` (a ``(1, 0)`` tensor for knob-free models)."""
    return torch.from_numpy(check_knobs(num_knobs)).reshape(1, num_knobs)


@torch.no_grad()
def initial_state(net: nn.Module) -> tuple[list[Tensor], StateLayout]:
    """Zero state tensors (silence) for batch 1, and the layout to rebuild the nested state."""
    knobs = example_knobs(net.num_knobs) if net.num_knobs else None
    _, state = net(torch.zeros(1, 1, TRACE_BLOCK), knobs, None)
    leaves, spec = tree_flatten(state)
    return [torch.zeros_like(leaf) for leaf in leaves if leaf is not None], StateLayout(spec, leaves)


def make_traceable(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with what a trace cannot hold (or would recompute every call) compiled
    or swapped for its scripted form: block-rate control
    (:class:`~nablafx.controllers.block_rate.BlockRateLSTM`, which the TFiLM family and the
    gray-box dynamic controllers share, is itself compiled), static biquad cascades' block form
    (:class:`~nablafx.processors.biquads.StaticBiquadForm`), the SIREN nonlinearity's lookup
    table fixed over :data:`MLP_TABLE_LIMIT` (its grid would otherwise freeze at the trace
    signal's range), S4 layers with their block operators fixed
    (:class:`~nablafx.models.s4.FrozenBlockSSM`). For export only (no gradients)."""
    net = copy.deepcopy(net)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BlockRateLSTM):
                setattr(parent, name, torch.jit.script(child))
            elif isinstance(child, DiagonalSSM):
                setattr(parent, name, torch.jit.script(FrozenBlockSSM(child)))
            elif isinstance(child, BiquadCascade):
                child.compile_static_form()
            elif isinstance(child, MLPNonlinearity) and child.lookup_step is not None:
                child.compile_table(MLP_TABLE_LIMIT)
    return net


@torch.no_grad()
def build_step(net: nn.Module, takes_knobs: bool) -> tuple[StreamingStep, list[Tensor], tuple]:
    """The eager :class:`StreamingStep` of ``net``, its zero state and example inputs for tracing."""
    net = make_traceable(net).eval()
    state, spec = initial_state(net)
    step = StreamingStep(net, spec, takes_knobs).eval()
    block = torch.randn(1, 1, TRACE_BLOCK, generator=torch.Generator().manual_seed(0)) * 0.5
    knobs = [example_knobs(net.num_knobs)] if takes_knobs else []
    return step, state, (block, *knobs, *state)


def trace_step(net: nn.Module, takes_knobs: bool = True, freeze: bool = False
               ) -> tuple[torch.jit.ScriptModule, list[Tensor], tuple]:
    """Trace the streaming step; returns the graph, the zero state and the example inputs.

    The trace runs with autograd enabled (on the copy :func:`make_traceable` makes): models may cache tensors in
    inference mode (S4 caches its kernels per chunk length), and a trace would turn such a
    cache into constants valid for one block length only. The copy's parameters are then
    frozen (``requires_grad=False``), so hosts build no autograd graph.

    ``freeze=True`` (TorchScript artefacts) also runs ``torch.jit.freeze``: the weights become
    constants and whatever depends only on them -- filter coefficients, static controls -- is
    computed once at export instead of on every call, which matters most for gray-box
    chains at small blocks.
    """
    step, state, example = build_step(net, takes_knobs)  # on a copy (make_traceable)
    with torch.enable_grad(), warnings.catch_warnings():
        # The tracer warns about every Python int it sees; the export check is the real test.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(step, example, check_trace=False)
    for parameter in traced.parameters():
        parameter.requires_grad_(False)
    if freeze:
        # (reloaded: a frozen module's type cannot be held by a scripted wrapper otherwise)
        traced = _fresh_copy(torch.jit.freeze(traced.eval()))
    return traced, state, example


#: Longest piece a host buffer is cut into, candidates for :func:`fastest_piece`.
PIECE_CANDIDATES = (64, 128, 256, 512, 1024, 2048, 4096)


def _fresh_copy(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """The same graph with a fresh executor (save and load: nothing of the old one carries over)."""
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


@torch.no_grad()
def fastest_piece(step: torch.jit.ScriptModule, state: list[Tensor], num_knobs: int, repeats: int = 5,
                  slowest_call: float = 0.05) -> int:
    """The block length at which ``step`` costs least per sample, measured on this machine.

    A traced graph keeps the code path of the length it was traced at, and TorchScript's
    executor does not cost the same per sample at every length (it specialises on shapes, and
    some operators scale worse than linearly), so long host buffers may be cheaper cut into
    pieces. Streaming is exact, so the
    cut changes nothing but the cost. Costs are the best of ``repeats`` one-thread calls in CPU
    time of this thread (steady on a busy machine); a length whose call takes more than
    ``slowest_call`` seconds ends the search, since longer ones only get slower.

    Each length runs on a fresh copy of the graph: TorchScript's executor specialises on the
    first input shapes it sees and runs later ones through slower fallback graphs, which
    would favour whichever length came first.
    """
    knobs = example_knobs(num_knobs)
    costs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a plugin runs it; parallel regions would also spin on a busy machine
    try:
        for length in PIECE_CANDIDATES:
            block = torch.zeros(1, 1, length)
            copy_of_step = _fresh_copy(step)
            for _ in range(3):  # warm-up: the executor profiles, then optimises
                copy_of_step(block, knobs, *state)
            times = []
            for _ in range(repeats):
                start = time.thread_time()
                copy_of_step(block, knobs, *state)
                times.append(time.thread_time() - start)
            costs[length] = min(times) / length
            if min(times) > slowest_call:
                break
    finally:
        torch.set_num_threads(threads)
    # The longest piece within 25% of the cheapest: measurement noise must not cut every
    # buffer into short pieces; only a clearly superlinear path should.
    cheapest = min(costs.values())
    return max(length for length, cost in costs.items() if cost <= 1.25 * cheapest)
