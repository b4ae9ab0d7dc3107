"""Static memoryless nonlinearities: SIREN MLP, safe rational (Padé) function, clippers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nablafx.core import State
from nablafx.dsp.waveshapers import CLIPPERS, fit_rational, rational
from nablafx.processors.base import Processor
from nablafx.processors.siren import Siren, load_weights, set_lr_scale
from nablafx.errors import ConfigError

DEFAULT_MLP_WEIGHTS = "siren_mlp_tanh.pt"


class Nonlinearity(Processor):
    """A memoryless ``y = f(x)``; subclasses implement :meth:`transfer`."""

    def transfer(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def process(self, x: Tensor, values: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        return self.transfer(x), None


class MLPNonlinearity(Nonlinearity):
    """SIREN ``1 -> 32 -> 32 -> 32 -> 1`` (first layer w0 = 30; 2,209 parameters).

    The input is divided by ``input_range`` (4) so the pretraining interval [-4, 4]
    covers the [-1, 1] domain SIREN's initialisation assumes. Starts from weights
    pretrained to tanh (``nablafx pretrain nonlinearity``).

    ``lookup_step``: the curve is memoryless and one-dimensional, so instead of running
    the network on every sample (about 2,200 multiply-adds and 96 sines each) it is
    evaluated on the fixed grid
    ``k * lookup_step`` covering the input's range and interpolated linearly. Gradients
    reach the network through the grid values and the input through the segment slopes.
    The grid is absolute, so streaming in blocks gives the same curve. The interpolation
    error is ``step^2 / 8 * max |f''|``: at the default 2**-10, measured < 1e-6 on [-4, 4]
    for the shipped tanh start and ~1e-5 beyond, where the network oscillates more. The
    grid costs a few thousand network evaluations per call instead of one per sample
    (a 16 x 3 s batch holds 2.3 million samples). None evaluates
    the network per sample.
    """

    def __init__(self, hidden: int = 32, sine_layers: int = 3, w0: float = 30.0, input_range: float = 4.0,
                 weights: str | None = DEFAULT_MLP_WEIGHTS, lr_scale: float = 0.01,
                 lookup_step: float | None = 2**-10):
        super().__init__()
        if lookup_step is not None and lookup_step <= 0:
            raise ConfigError(f"lookup_step must be positive or None, got {lookup_step}")
        self.input_range = float(input_range)
        self.lookup_step = lookup_step
        self.siren = Siren(1, hidden, sine_layers, 1, w0)
        load_weights(self.siren, weights)
        set_lr_scale(self.siren, lr_scale)
        # The compiled lookup of exported models (compile_table), x -> y.
        self.table_transfer: nn.Module | None = None

    def compile_table(self, limit: float) -> None:
        """For export: the lookup as :class:`TableNonlinearity`, its table fixed over
        ``[-limit, limit]`` and compiled, since the grid of :meth:`transfer` is sized from the
        data through Python ints, which a trace would freeze."""
        self.table_transfer = torch.jit.script(TableNonlinearity(self, limit))

    def network(self, x: Tensor) -> Tensor:
        """The SIREN curve evaluated exactly at ``x``."""
        return self.siren((x / self.input_range).unsqueeze(-1)).squeeze(-1)

    def transfer(self, x: Tensor) -> Tensor:
        if self.lookup_step is None or x.numel() == 0:
            return self.network(x)
        if self.table_transfer is not None:
            return self.table_transfer(x)
        position = x / self.lookup_step
        first = int(torch.floor(position.min()))
        last = int(torch.floor(position.max())) + 1
        grid = torch.arange(first, last + 1, device=x.device, dtype=x.dtype) * self.lookup_step
        table = self.network(grid)
        segment = (torch.floor(position) - first).long().clamp(0, last - first - 1)
        fraction = position - (segment + first)
        return table[segment] + (table[segment + 1] - table[segment]) * fraction


class RationalNonlinearity(Nonlinearity):
    """Safe Padé function ``P(x) / (1 + sum_k |b_k x^k|)`` of degrees (m, n), default (6, 5).

    ``m + 1 + n`` coefficients (12 by default), initialised to tanh on
    ``[-init_range, init_range]`` by :func:`nablafx.dsp.waveshapers.fit_rational`.
    """

    def __init__(self, numerator_degree: int = 6, denominator_degree: int = 5, init_range: float = 4.0):
        super().__init__()
        if numerator_degree < 0 or denominator_degree < 1:
            raise ConfigError("RationalNonlinearity needs numerator_degree >= 0 and denominator_degree >= 1")
        numerator, denominator = fit_rational(torch.tanh, numerator_degree, denominator_degree, init_range)
        self.numerator = nn.Parameter(numerator.float())
        self.denominator = nn.Parameter(denominator.float())

    def transfer(self, x: Tensor) -> Tensor:
        return rational(x, self.numerator.to(x.dtype), self.denominator.to(x.dtype))


class Clipper(Nonlinearity):
    """Fixed clipper: ``shape`` = ``tanh``, ``hard`` or ``soft`` (see :mod:`nablafx.dsp.waveshapers`)."""

    def __init__(self, shape: str = "tanh"):
        super().__init__()
        if shape not in CLIPPERS:
            raise ConfigError(f"unknown clipper shape {shape!r}; valid: {', '.join(CLIPPERS)}")
        self.shape = shape

    def transfer(self, x: Tensor) -> Tensor:
        return CLIPPERS[self.shape](x)


class TableNonlinearity(nn.Module):
    """The SIREN nonlinearity's lookup (:class:`MLPNonlinearity`) with its table computed
    once, over ``[-limit, limit]``: its form in exported models (scripted).

    The eager lookup sizes its grid ``k * lookup_step`` from ``x.min()`` / ``x.max()`` through
    Python ints, which a trace records as constants: a traced chain would keep the grid of the
    trace signal and extrapolate its edge segments for anything louder. Sizing the grid per call
    in tensors would trace, but would rerun the network on ~2,000 points per block. So the table
    is fixed here on the same absolute grid (identical values), and samples beyond ``limit`` get
    the network evaluated at the two grid points around them, as the eager lookup does: the same
    curve at any input level, at the network's cost only for those samples.
    """

    def __init__(self, processor: MLPNonlinearity, limit: float):
        super().__init__()
        self.siren = processor.siren
        self.input_range: float = processor.input_range
        self.step: float = float(processor.lookup_step)
        count = int(limit / self.step) + 1
        self.first: int = -count
        with torch.no_grad():
            grid = torch.arange(-count, count + 1, dtype=torch.float32) * self.step
            self.table = processor.network(grid).detach()

    def network(self, x: Tensor) -> Tensor:
        return self.siren((x / self.input_range).unsqueeze(-1)).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        table = self.table.to(x.dtype)
        position = x / self.step
        k = torch.floor(position)
        fraction = position - k
        index = k - self.first
        last = table.shape[0] - 2
        segment = index.clamp(0, last).long()
        low, high = table[segment], table[segment + 1]
        outside = (index < 0) | (index > last)
        if bool(outside.any()):
            beyond = k[outside]
            low = low.masked_scatter(outside, self.network(beyond * self.step))
            high = high.masked_scatter(outside, self.network((beyond + 1) * self.step))
        return low + (high - low) * fraction
