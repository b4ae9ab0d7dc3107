"""Frequency-domain filtering: response sampling, frequency-sampling filtering, FFT convolution.

Frequency sampling (training path of LTI blocks): a rational response
``H(e^{jw}) = B(e^{jw}) / A(e^{jw})`` is sampled on ``n_fft`` points with real FFTs of
the zero-padded coefficients and applied by multiplying spectra. The inverse FFT of the
sampled response is the impulse response *aliased* to ``n_fft`` samples,
``h_N[n] = sum_m h[n + m N]``; for an input of ``T`` samples the output therefore
differs from exact IIR filtering only by the part of the impulse response that lies
beyond ``n_fft - T`` samples (it wraps around). :func:`frequency_sampling_size` leaves
at least ``tail_samples`` (default 2**16, 1.4 s at 48 kHz) of room for the tail:
the slowest-decaying biquad in the shipped ranges (Q = 10 at 20 Hz, time constant
Q / (pi f) = 0.16 s) has decayed by more than 70 dB by then.
"""

from __future__ import annotations

import torch
from torch import Tensor
from nablafx.errors import ConfigError

DEFAULT_TAIL_SAMPLES = 2**16


def next_power_of_two(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def frequency_sampling_size(num_samples: int, tail_samples: int | None = None) -> int:
    """FFT length for filtering ``num_samples`` by frequency sampling with room for the IIR tail
    (``tail_samples``, default :data:`DEFAULT_TAIL_SAMPLES`, read at call time)."""
    return next_power_of_two(num_samples + (DEFAULT_TAIL_SAMPLES if tail_samples is None else tail_samples))


def polynomial_response(coefficients: Tensor, n_fft: int) -> Tensor:
    """``sum_k c_k e^{-j w k}`` at the ``n_fft // 2 + 1`` bins ``w = 2 pi m / n_fft`` of a real FFT.

    One real matrix product with an interleaved ``[cos(w k), -sin(w k)]`` table, viewed as
    complex without a copy: for a handful of coefficients this is much cheaper, forward
    and backward, than ``n_fft``-point transforms of mostly zeros.
    """
    order = coefficients.shape[-1]
    w = torch.linspace(0, torch.pi, n_fft // 2 + 1, dtype=coefficients.dtype, device=coefficients.device)
    phase = torch.arange(order, dtype=coefficients.dtype, device=coefficients.device).view(-1, 1) * w
    table = torch.stack([phase.cos(), -phase.sin()], dim=-1).reshape(order, -1)
    return torch.view_as_complex((coefficients @ table).unflatten(-1, (-1, 2)))


def product(responses: list[Tensor]) -> Tensor:
    """Product of responses, one multiplication at a time (``Tensor.prod``'s backward divides)."""
    result = responses[0]
    for response in responses[1:]:
        result = result * response
    return result


def rational_frequency_response(b: Tensor, a: Tensor, n_fft: int) -> Tensor:
    """``B(e^{jw}) / A(e^{jw})`` at the ``n_fft // 2 + 1`` bins of a real FFT.

    ``b`` and ``a`` are ``(..., order + 1)``; the result is complex ``(..., n_fft // 2 + 1)``.
    """
    return polynomial_response(b, n_fft) / polynomial_response(a, n_fft)


def fft_filter(x: Tensor, response: Tensor, n_fft: int) -> Tensor:
    """Filter ``x`` (batch, channels, time) by a sampled frequency response.

    ``response`` is complex ``(batch, n_fft // 2 + 1)`` (or with batch 1), the same for
    every channel. Zero state: the block starts from silence and its tail is dropped.
    """
    if n_fft < x.shape[-1]:
        raise ConfigError(f"n_fft ({n_fft}) must be at least the signal length ({x.shape[-1]})")
    spectrum = torch.fft.rfft(x, n=n_fft) * response.unsqueeze(-2)
    return torch.fft.irfft(spectrum, n=n_fft)[..., : x.shape[-1]]


def fft_convolve(x: Tensor, taps: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Causal FIR filtering ``y[n] = sum_k taps[k] x[n - k]`` by FFT, carrying the input history.

    Args:
        x: ``(batch, channels, time)``.
        taps: ``(taps,)`` or broadcastable to ``(batch, channels, taps)``.
        state: the previous ``taps - 1`` input samples ``(batch, channels, taps - 1)``;
            None = silence.

    Returns:
        ``(y, state)``; blocks processed with the carried state equal one call.
    """
    context = taps.shape[-1] - 1
    if state is None:
        state = x.new_zeros(*x.shape[:-1], context)
    extended = torch.cat([state, x], dim=-1)
    if torch.jit.is_tracing() and taps.dim() == 1:
        # The FFT size follows the block length, which a trace would freeze: convolve directly.
        rows = extended.reshape(-1, 1, extended.shape[-1])
        y = torch.nn.functional.conv1d(rows, taps.flip(-1).view(1, 1, -1)).reshape(x.shape)
        return y, extended[..., extended.shape[-1] - context :]
    # Circular convolution is linear for every output that needs no sample before the
    # start of ``extended``, i.e. all the ones we keep, as long as n_fft >= its length.
    n_fft = next_power_of_two(extended.shape[-1])
    spectrum = torch.fft.rfft(extended, n=n_fft) * torch.fft.rfft(taps, n=n_fft)
    y = torch.fft.irfft(spectrum, n=n_fft)[..., context : extended.shape[-1]]
    return y, extended[..., extended.shape[-1] - context :]
