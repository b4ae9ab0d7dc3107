"""The built-in synthetic dataset: train and test without downloading anything.

- :mod:`~nablafx.data.synth.dry`: guitar- and bass-like dry signals synthesised in code
  (plucked notes, chords, palm mutes, sine sweeps, noise bursts) at varied levels;
- :mod:`~nablafx.data.synth.devices`: virtual devices (an oversampled diode-clipper
  overdrive, a feed-forward compressor) with knobs in [0, 1];
- :mod:`~nablafx.data.synth.render`: writes both to disk in the ToneTwist AFx layout,
  so the ToneTwist dataset code reads the result unchanged.

Command line: ``nablafx data synth --out data/synth --knobs D=0,0.5,1``.
"""

from importlib import import_module

from nablafx.data.synth.manifest import GENERATOR_VERSION

# The devices and the renderer import numba: loaded on first use, so that reading a
# dataset's manifest (every training run on synthetic data) stays light.
_LAZY = {
    "DEVICES": "devices",
    "VirtualDevice": "devices",
    "make_dry": "dry",
    "knob_grid": "render",
    "parse_knob_grid": "render",
    "render_dataset": "render",
    "setting_name": "render",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"nablafx.data.synth.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEVICES",
    "GENERATOR_VERSION",
    "VirtualDevice",
    "knob_grid",
    "make_dry",
    "parse_knob_grid",
    "render_dataset",
    "setting_name",
]
