"""Black-box effect models. Every model follows ``y, state = model(x, knobs, state)``.

- :class:`TCN`, :class:`GCN`: dilated causal convolutions (plain / gated with skips);
- :class:`S4`: diagonal state-space layers (FFT convolution + exact recurrence);
- :class:`RNN`: one-layer LSTM/GRU;
- :class:`WaveNet`: the Neural Amp Modeler "A1" WaveNet (exports to ``.nam``);
- conditioning (FiLM, TFiLM, TTFiLM, TVFiLM) in :mod:`nablafx.models.conditioning`;
- :class:`GrayBoxChain`: gray-box chains of DSP processors and controllers.
"""

from nablafx.models.conditioning import CONDITIONING_METHODS, Conditioning
from nablafx.models.gcn import GCN
from nablafx.models.graybox import GrayBoxChain
from nablafx.models.rnn import RNN
from nablafx.models.s4 import S4, DiagonalSSM
from nablafx.models.tcn import TCN
from nablafx.models.wavenet import WaveNet

__all__ = ["CONDITIONING_METHODS", "Conditioning", "DiagonalSSM", "GCN", "GrayBoxChain", "RNN", "S4", "TCN", "WaveNet"]
