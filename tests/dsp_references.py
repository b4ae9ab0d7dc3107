"""Independent references for the processors: numpy / scipy.signal from the documented formulas.

Nothing here calls nablafx DSP code: the RBJ cookbook biquads, direct-form-I filtering, the
Giannoulis et al. compressor, the SIREN forward pass and the waveshapers are written out from
their published definitions. Only declared parameter ranges (``param_specs``), the band layout
(``kinds``) and learned weights are read from the processor under test.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch

from nablafx.processors import (
    BiquadCascade,
    Clipper,
    Compressor,
    DCOffset,
    FIRFilter,
    Gain,
    MLPNonlinearity,
    PolarityInversion,
    RationalNonlinearity,
)


def physical(spec, u: np.ndarray) -> np.ndarray:
    """A normalised control in [0, 1] -> the parameter's value: linear, or geometric for log scales."""
    if spec.scale == "log":
        return spec.minimum * (spec.maximum / spec.minimum) ** u
    return spec.minimum + u * (spec.maximum - spec.minimum)


def rbj(kind: str, f0, q, gain_db, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """RBJ Audio EQ Cookbook biquads (R. Bristow-Johnson), ``b``, ``a`` shaped ``(..., 3)``, a0 = 1."""
    w0 = 2 * np.pi * np.asarray(f0, dtype=np.float64) / fs
    cw, alpha = np.cos(w0), np.sin(w0) / (2 * np.asarray(q, dtype=np.float64))
    A = 10 ** (np.asarray(gain_db, dtype=np.float64) / 40) if gain_db is not None else None
    if kind == "lowpass":
        b, a = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2], [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "highpass":
        b, a = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2], [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "peaking":
        b, a = [1 + alpha * A, -2 * cw, 1 - alpha * A], [1 + alpha / A, -2 * cw, 1 - alpha / A]
    else:
        root = 2 * np.sqrt(A) * alpha
        sign = 1 if kind == "lowshelf" else -1  # the high shelf is the low shelf with cos(w0) negated
        c = sign * cw
        b = [A * ((A + 1) - (A - 1) * c + root), sign * 2 * A * ((A - 1) - (A + 1) * c), A * ((A + 1) - (A - 1) * c - root)]
        a = [(A + 1) + (A - 1) * c + root, -sign * 2 * ((A - 1) + (A + 1) * c), (A + 1) + (A - 1) * c - root]
    b, a = np.stack(np.broadcast_arrays(*b), -1), np.stack(np.broadcast_arrays(*a), -1)
    return b / a[..., :1], a / a[..., :1]


def time_varying_df1(x: np.ndarray, b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Direct form I, one coefficient set per sample (``b``, ``a`` shaped ``(time, 3)``)."""
    y = np.zeros_like(x)
    x1 = x2 = y1 = y2 = 0.0
    for n in range(len(x)):
        y[n] = b[n, 0] * x[n] + b[n, 1] * x1 + b[n, 2] * x2 - a[n, 1] * y1 - a[n, 2] * y2
        x2, x1, y2, y1 = x1, x[n], y1, y[n]
    return y


def reference_compressor(x: np.ndarray, p: dict, fs: float) -> np.ndarray:
    """Giannoulis, Massberg & Reiss (JAES 2012): soft-knee gain computer on the dB level,
    branching attack/release one-pole on the gain reduction, make-up gain; per sample."""
    y, s = np.empty_like(x), 0.0
    for n in range(len(x)):
        T, R, W = p["threshold_db"][n], p["ratio"][n], p["knee_db"][n]
        level = 20 * np.log10(abs(x[n]) + 1e-6)
        if 2 * (level - T) < -W:
            out = level
        elif 2 * (level - T) > W:
            out = T + (level - T) / R
        else:
            out = level + (1 / R - 1) * (level - T + W / 2) ** 2 / (2 * W)
        r = out - level
        tau_ms = p["attack_ms"][n] if r < s else p["release_ms"][n]
        alpha = np.exp(-1000.0 / (tau_ms * fs))
        s = alpha * s + (1 - alpha) * r
        y[n] = x[n] * 10 ** ((s + p["makeup_db"][n]) / 20)
    return y


def reference_siren(siren, x: np.ndarray) -> np.ndarray:
    """``out(sin(w0 (W_k ... sin(w0 (W_1 x + b_1)) ... + b_k)))`` in numpy from the weights."""
    h = x[:, None]
    for layer in siren.hidden:
        h = np.sin(siren.w0 * (h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()))
    return (h @ siren.out.weight.detach().double().numpy().T + siren.out.bias.detach().double().numpy())[:, 0]


def reference_output(processor, x: np.ndarray, controls: np.ndarray | None) -> np.ndarray:
    """What ``processor`` should output for mono ``x`` (time,) and its controls (n_params, 1 or time)."""
    length = len(x)
    values = {}
    if controls is not None:
        for i, spec in enumerate(processor.param_specs):
            values[spec.name] = np.broadcast_to(physical(spec, controls[i]), (length,))
    if isinstance(processor, Gain):
        return x * 10 ** (values["gain_db"] / 20)
    if isinstance(processor, DCOffset):
        return x + values["offset"]
    if isinstance(processor, PolarityInversion):
        return -x
    if isinstance(processor, BiquadCascade):
        y = x
        for kind, prefix in processor.kinds:
            gain = values.get(prefix + "gain_db")
            b, a = rbj(kind, values[prefix + "cutoff_hz"], values[prefix + "q"], gain, processor.sample_rate)
            if controls.shape[-1] == 1:
                y = scipy.signal.lfilter(b[0], a[0], y)  # static: scipy's filter
            else:
                y = time_varying_df1(y, b, a)
        return y
    if isinstance(processor, FIRFilter):
        return scipy.signal.lfilter(processor.taps().detach().double().numpy(), [1.0], x)
    if isinstance(processor, MLPNonlinearity):
        return reference_siren(processor.siren, x / processor.input_range)
    if isinstance(processor, RationalNonlinearity):
        a, b = processor.numerator.detach().double().numpy(), processor.denominator.detach().double().numpy()
        numerator = sum(a_k * x**k for k, a_k in enumerate(a))
        return numerator / (1 + sum(abs(b_k * x ** (k + 1)) for k, b_k in enumerate(b)))
    if isinstance(processor, Clipper):
        inside = np.clip(x, -1, 1)
        return {"tanh": np.tanh(x), "hard": inside, "soft": 1.5 * inside - 0.5 * inside**3}[processor.shape]
    if isinstance(processor, Compressor):
        return reference_compressor(x, values, processor.sample_rate)
    raise AssertionError(f"no reference for {type(processor).__name__}")


def assert_matches_reference(processor, x: torch.Tensor, controls: torch.Tensor | None, y: torch.Tensor,
                             atol: float) -> None:
    for i in range(x.shape[0]):
        item = None if controls is None else controls[i if controls.shape[0] > 1 else 0].numpy()
        expected = reference_output(processor, x[i, 0].numpy(), item)
        np.testing.assert_allclose(y[i, 0].detach().numpy(), expected, atol=atol, rtol=0,
                                   err_msg=f"{type(processor).__name__}, batch item {i}")


def s4_recurrence(ssm, u: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The diagonal SSM's definition, one sample at a time, from its discretisation:
    ``s = dA s + dB u``, ``y = 2 Re(C s) + D u`` (state as real pairs, like the layer's)."""
    dtA, dB, C = ssm.discretize()
    dA = torch.exp(dtA)
    if state is None:
        s = torch.zeros(u.shape[0], ssm.channels, ssm.state_size, dtype=dA.dtype, device=u.device)
    else:
        s = torch.view_as_complex(state.contiguous())
    outputs = []
    for k in range(u.shape[-1]):
        u_k = u[..., k]
        s = dA * s + dB * u_k.unsqueeze(-1)
        outputs.append(2 * (C * s).sum(-1).real + ssm.D * u_k)
    y = torch.stack(outputs, dim=-1) if outputs else u.clone()
    return y, torch.view_as_real(s)
