"""Pure, batched, differentiable DSP functions on tensors (no modules, no learned state).

- :mod:`~nablafx.dsp.mapping`: [0, 1] controls to physical units by declared scale;
- :mod:`~nablafx.dsp.biquad`: RBJ cookbook biquad design;
- :mod:`~nablafx.dsp.frequency`: response sampling, frequency-sampling filtering (training
  path), FFT convolution with state;
- :mod:`~nablafx.dsp.iir`: recursive biquad cascades with state (streaming path);
- :mod:`~nablafx.dsp.recursion`: the exact time-varying IIR kernel with its adjoint;
- :mod:`~nablafx.dsp.interpolation`: causal control-rate to audio-rate interpolation;
- :mod:`~nablafx.dsp.waveshapers`: memoryless clippers and the safe rational function;
- :mod:`~nablafx.dsp.dynamics`: feed-forward compressor (gain computer + ballistics).
"""

from nablafx.dsp.biquad import biquad_coefficients
from nablafx.dsp.dynamics import compress, gain_computer, smooth_gain
from nablafx.dsp.frequency import (
    fft_convolve,
    fft_filter,
    frequency_sampling_size,
    rational_frequency_response,
)
from nablafx.dsp.iir import biquad_filter
from nablafx.dsp.interpolation import upsample_controls
from nablafx.dsp.mapping import denormalize, normalize
from nablafx.dsp.recursion import iir_filter
from nablafx.dsp.waveshapers import CLIPPERS, fit_rational, rational

__all__ = [
    "CLIPPERS",
    "biquad_coefficients",
    "biquad_filter",
    "compress",
    "denormalize",
    "fft_convolve",
    "fft_filter",
    "fit_rational",
    "frequency_sampling_size",
    "gain_computer",
    "iir_filter",
    "normalize",
    "rational",
    "rational_frequency_response",
    "smooth_gain",
    "upsample_controls",
]
