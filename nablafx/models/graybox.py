"""Gray-box models: an ordered chain of differentiable DSP processors and their controllers.

A stage is a processor (:mod:`nablafx.processors`) plus the controller kind that drives
its parameters (:mod:`nablafx.controllers`). Chains come from the compact spec of the
NablAFx papers, ``"peq.s+g.s+off.s+mlp+g.s+peq.s+lp.s"``, or from a list of stage dicts
in YAML; both become the same plain-data stage list, so a checkpoint rebuilds the chain
from its init args.

Spec tokens: see :data:`TOKENS`; suffixes: ``.s`` static, ``.sc`` static-conditional
(knobs), ``.d`` dynamic (signal envelope), ``.dc`` dynamic-conditional. Processors
without parameters (``phinv``, ``mlp``, ``rnl``, ``fir``, clippers) take no suffix
(``.s`` is accepted and means the same).

Two forward paths:

- training (``self.training`` and ``frequency_sampling=True``): runs of consecutive
  linear time-invariant stages with static controllers (filters, EQs, static gains,
  polarity, FIR) are fused into one sampled frequency response and applied with one
  FFT pair (exact up to the IIR tail truncation of :mod:`nablafx.dsp.frequency`); other
  stages (nonlinear, time-varying, knob-conditioned: see
  :meth:`~nablafx.processors.base.Processor.uses_frequency_sampling`) run as in
  streaming. This path returns no state (passing one is an error);
- streaming (evaluation mode, or ``frequency_sampling=False``): every stage runs its
  exact recursive form and ``y, state = chain(x, knobs, state)`` continues a signal
  exactly, for any block size.

On 3 s of noise through every chain in cfg/model/gb (parameters randomised) the two
paths agree to a relative RMS error <= 8e-7 in float32; the tests require < 1e-5.
"""

from __future__ import annotations

import copy
import importlib
import inspect

from torch import Tensor, nn

from nablafx.controllers import DynamicController, StaticConditionalController, StaticController
from nablafx.core import State, StreamModule
from nablafx.dsp.frequency import fft_filter, frequency_sampling_size, product
from nablafx.models.base import check_state_entries
from nablafx.processors.base import Processor
from nablafx.errors import ConfigError

_P = "nablafx.processors."

#: Spec tokens -> stage description (processor class path and init args; "trainable").
TOKENS: dict[str, dict] = {
    "peq": {"processor": {"class_path": _P + "ParametricEQ"}},
    "g": {"processor": {"class_path": _P + "Gain"}},
    "off": {"processor": {"class_path": _P + "DCOffset"}},
    "phinv": {"processor": {"class_path": _P + "PolarityInversion"}},
    "mlp": {"processor": {"class_path": _P + "MLPNonlinearity"}},
    "rnl": {"processor": {"class_path": _P + "RationalNonlinearity"}},
    "fir": {"processor": {"class_path": _P + "FIRFilter"}},
    # Fixed anti-harshness low-pass of the published chains: 20 kHz, Q 0.7, not trained.
    "lp": {
        "processor": {"class_path": _P + "LowPass", "init_args": {"defaults": {"cutoff_hz": 20000.0, "q": 0.7}}},
        "trainable": False,
    },
    "hp": {"processor": {"class_path": _P + "HighPass"}},
    "pk": {"processor": {"class_path": _P + "Peaking"}},
    "ls": {"processor": {"class_path": _P + "LowShelf"}},
    "hs": {"processor": {"class_path": _P + "HighShelf"}},
    "tanh": {"processor": {"class_path": _P + "Clipper", "init_args": {"shape": "tanh"}}},
    "hardclip": {"processor": {"class_path": _P + "Clipper", "init_args": {"shape": "hard"}}},
    "softclip": {"processor": {"class_path": _P + "Clipper", "init_args": {"shape": "soft"}}},
    "comp": {"processor": {"class_path": _P + "Compressor"}},
}

#: Controller suffixes.
CONTROLS = ("s", "sc", "d", "dc")


def parse_spec(spec: str) -> list[dict]:
    """``"peq.s+g.d+mlp"`` -> list of stage dicts ``{"name", "processor", "control", ...}``."""
    stages = []
    for i, item in enumerate(spec.replace(" ", "").split("+")):
        token, _, control = item.partition(".")
        if token not in TOKENS:
            raise ConfigError(
                f"spec {spec!r}, stage {i}: unknown token {token!r}; valid tokens: {', '.join(TOKENS)}"
            )
        if control and control not in CONTROLS:
            raise ConfigError(
                f"spec {spec!r}, stage {i} ({item!r}): unknown controller suffix {control!r}; "
                f"valid suffixes: {', '.join('.' + c for c in CONTROLS)}"
            )
        stage = copy.deepcopy(TOKENS[token])
        stage.update(name=item, control=control or None)
        stages.append(stage)
    return stages


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _build_processor(config: dict, sample_rate: float) -> Processor:
    class_path = config["class_path"]
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name.startswith("nablafx"):
        raise ConfigError(f"refusing to build {class_path!r}: not a nablafx class")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Processor)):
        raise ConfigError(f"{class_path!r} is not a nablafx processor")
    init_args = dict(config.get("init_args") or {})
    if "sample_rate" in inspect.signature(cls.__init__).parameters:
        init_args.setdefault("sample_rate", sample_rate)
    return cls(**init_args)


class Stage(nn.Module):
    """One processor and the controller of its parameters (None for parameterless processors)."""

    def __init__(self, name: str, processor: Processor, controller: nn.Module | None):
        super().__init__()
        self.name = name
        self.processor = processor
        self.controller = controller

    def controls(self, x: Tensor, knobs: Tensor | None, state: State) -> tuple[Tensor | None, State]:
        if self.controller is None:
            return None, None
        return self.controller(x, knobs if self.controller.num_knobs else None, state)


class GrayBoxChain(StreamModule):
    """A gray-box model: ``y, state = chain(x, knobs, state)``.

    Args:
        spec: compact spec, e.g. ``"peq.s+g.s+off.s+mlp+g.s+peq.s+lp.s"``.
        stages: alternative to ``spec``: stage dicts ``{"processor": {"class_path", "init_args"},
            "control": "s"|"sc"|"d"|"dc"|None, "trainable": bool, "controller_args": {...},
            "name": str}``.
        overrides: ``{stage index: partial stage dict}`` merged into the stages, e.g.
            ``{3: {"processor": {"init_args": {"weights": null}}}}``.
        num_knobs: device knobs; needed by ``.sc``/``.dc`` stages.
        sample_rate: Hz, passed to every processor that takes one.
        control_block_size: samples per control step of dynamic controllers (128 = 375 Hz at 48 kHz).
        interpolation: control-rate to audio-rate interpolation of dynamic controllers.
        frequency_sampling: use the fused frequency-sampling path in training mode.
    """

    def __init__(self, spec: str | None = None, stages: list[dict] | None = None, overrides: dict | None = None,
                 num_knobs: int = 0, sample_rate: float = 48000, control_block_size: int = 128,
                 interpolation: str = "linear", frequency_sampling: bool = True):
        super().__init__()
        if (spec is None) == (stages is None):
            raise ConfigError("GrayBoxChain needs exactly one of spec (a string) or stages (a list of dicts)")
        stage_configs = parse_spec(spec) if spec is not None else [dict(s) for s in stages]
        for index, override in (overrides or {}).items():
            i = int(index)
            if not 0 <= i < len(stage_configs):
                raise ConfigError(f"override for stage {index}: the chain has {len(stage_configs)} stages")
            stage_configs[i] = _merge(stage_configs[i], override)
        if not stage_configs:
            raise ConfigError("GrayBoxChain needs at least one stage")
        self.num_knobs = num_knobs
        self.sample_rate = float(sample_rate)
        self.frequency_sampling = frequency_sampling
        built = []
        for i, config in enumerate(stage_configs):
            name = config.get("name") or config["processor"]["class_path"].rpartition(".")[2]
            try:
                processor = _build_processor(config["processor"], sample_rate)
                controller = self._build_controller(processor, config, control_block_size, interpolation)
            except (ValueError, TypeError, FileNotFoundError) as error:
                raise type(error)(f"gray-box stage {i} ({name!r}): {error}") from error
            processor.frequency_sampling = frequency_sampling
            built.append(Stage(name, processor, controller))
        self.stages = nn.ModuleList(built)

    def _build_controller(self, processor: Processor, config: dict, block_size: int, interpolation: str):
        control = config.get("control")
        if processor.num_params == 0:
            if control not in (None, "s"):
                raise ConfigError(
                    f"{type(processor).__name__} has no parameters to control; drop the '.{control}' suffix"
                )
            return None
        if control is None:
            raise ConfigError(
                f"{type(processor).__name__} has parameters; choose a controller suffix "
                f"({', '.join('.' + c for c in CONTROLS)})"
            )
        init = [spec.default_normalized for spec in processor.param_specs]
        args = dict(config.get("controller_args") or {})
        num_params = processor.num_params
        if control == "s":
            return StaticController(num_params, init=init, trainable=config.get("trainable", True), **args)
        if control in ("sc", "dc") and self.num_knobs < 1:
            raise ConfigError(f"controller '.{control}' is conditioned on knobs but the chain has num_knobs=0")
        if control == "sc":
            return StaticConditionalController(num_params, self.num_knobs, init=init, **args)
        knobs = self.num_knobs if control == "dc" else 0
        return DynamicController(
            num_params, knobs, init=init, block_size=block_size, interpolation=interpolation, **args
        )

    @property
    def receptive_field(self) -> int:
        return 0  # recursive filters and dynamic controllers: unbounded memory

    def check_state(self, state: State) -> State:
        """``state`` if it has this chain's layout: one ``(controller_state, processor_state)``
        pair per stage, ``None`` for the controller of a stage without one; else a ConfigError."""
        check_state_entries(self, state, len(self.stages), "(controller state, processor state) pairs, one per stage")
        for i, (stage, entry) in enumerate(zip(self.stages, state)):
            where = f"GrayBoxChain stage {i} ({stage.name!r})"
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                got = f"{len(entry)} entries" if isinstance(entry, (list, tuple)) else f"a {type(entry).__name__}"
                raise ConfigError(
                    f"{where}: a stage's state is a (controller state, processor state) pair, got {got}; "
                    "pass back the state this chain returned (or None to start from silence)"
                )
            if stage.controller is None and entry[0] is not None:
                raise ConfigError(
                    f"{where} has no controller but its state entry carries a controller state; the state "
                    "comes from another chain: pass back the state this chain returned (or None)"
                )
        return state

    def forward(self, x: Tensor, knobs: Tensor | None = None, state: State = None) -> tuple[Tensor, State]:
        y, state, _ = self.run(x, knobs, state)
        return y, state

    def run(self, x: Tensor, knobs: Tensor | None = None, state: State = None,
            record: bool = False) -> tuple[Tensor, State, list[dict]]:
        """Forward pass; with ``record=True`` also returns, per stage, its name, controls,
        physical parameter values and input/output audio (used by the plots)."""
        self.check_input(x, knobs)
        fused = self.training and self.frequency_sampling
        if fused and state is not None:
            raise ConfigError(
                "GrayBoxChain: the frequency-sampling training path keeps no state; build the chain with "
                "frequency_sampling=False to carry state while training (truncated BPTT)"
            )
        states = self.check_state(state) if state is not None else [(None, None)] * len(self.stages)
        new_states, records, pending = [], [], []
        n_fft = frequency_sampling_size(x.shape[-1])
        signal = x
        for stage, (controller_state, processor_state) in zip(self.stages, states):
            controls, controller_state = stage.controls(x, knobs, controller_state)
            processor = stage.processor
            values = processor.denormalize(controls)
            stage_input = signal
            if fused and processor.uses_frequency_sampling(values):
                processor.check_controls(signal, controls)
                pending.append(processor.frequency_response(values, n_fft))
            else:
                if pending:
                    signal = fft_filter(signal, product(pending), n_fft)
                    pending = []
                signal, processor_state = processor(signal, controls, processor_state)
            new_states.append((controller_state, processor_state))
            if record:
                records.append({"name": stage.name, "processor": processor, "controls": controls,
                                "values": values, "input": stage_input, "output": signal})
        if pending:
            signal = fft_filter(signal, product(pending), n_fft)
        return signal, (None if fused else new_states), records
