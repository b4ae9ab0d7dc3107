"""The built-in synthetic dataset: train and test without downloading anything.

- :mod:`~nablafx.data.synth.dry`: guitar- and bass-like dry signals synthesised in code
  (plucked notes, chords, palm mutes, sine sweeps, noise bursts) at varied levels;
- :mod:`~nablafx.data.synth.devices`: virtual devices (an oversampled diode-clipper
  overdrive, a feed-forward compressor) with knobs in [0, 1];
- :mod:`~nablafx.data.synth.render`: writes both to disk in the ToneTwist AFx layout,
  so the ToneTwist dataset code reads the result unchanged.

Command line: ``nablafx data synth --out data/synth --knobs D=0,0.5,1``.
"""

from nablafx.data.synth.devices import DEVICES, VirtualDevice
from nablafx.data.synth.dry import make_dry
from nablafx.data.synth.render import (
    GENERATOR_VERSION,
    knob_grid,
    parse_knob_grid,
    render_dataset,
    setting_name,
)

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
