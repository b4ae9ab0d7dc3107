"""DSP blocks built on :mod:`nablafx.dsp`, each declaring its parameters (name, range, unit, scale).

Call convention: ``y, state = processor(x, controls, state)`` with controls in [0, 1]
shaped ``(batch, n_params, 1)`` or ``(batch, n_params, time)``.
"""

from nablafx.processors.base import ParamSpec, Processor
from nablafx.processors.biquads import BiquadCascade, HighPass, HighShelf, LowPass, LowShelf, ParametricEQ, Peaking
from nablafx.processors.compressor import Compressor
from nablafx.processors.fir import FIRFilter
from nablafx.processors.gain import DCOffset, Gain, PolarityInversion
from nablafx.processors.nonlinearities import Clipper, MLPNonlinearity, Nonlinearity, RationalNonlinearity

__all__ = [
    "BiquadCascade",
    "Clipper",
    "Compressor",
    "DCOffset",
    "FIRFilter",
    "Gain",
    "HighPass",
    "HighShelf",
    "LowPass",
    "LowShelf",
    "MLPNonlinearity",
    "Nonlinearity",
    "ParamSpec",
    "ParametricEQ",
    "Peaking",
    "PolarityInversion",
    "Processor",
    "RationalNonlinearity",
]
