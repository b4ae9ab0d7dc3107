"""``nablafx pretrain``: fit the SIREN blocks of the gray-box chains to their starting points.

Sub-modes (CPU only, seconds to a minute):

- ``nonlinearity``: fit :class:`~nablafx.processors.MLPNonlinearity` to a target curve on
  ``[-range, range]`` (default tanh on [-4, 4]) -> ``weights/siren_mlp_tanh.pt``;
- ``fir``: fit :class:`~nablafx.processors.FIRFilter` to an impulse response from a WAV
  file, or, without one, to a synthetic cabinet-like response (see
  :func:`synthetic_cabinet_ir`) -> ``weights/siren_fir_cabinet.pt``.

Each writes a plain ``state_dict`` (``torch.save``; loaded with ``weights_only=True``) and
a PNG plot of target vs fit next to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

from nablafx.dsp.biquad import biquad_coefficients
from nablafx.dsp.recursion import iir_filter
from nablafx.dsp.waveshapers import CLIPPERS
from nablafx.processors.fir import DEFAULT_FIR_WEIGHTS
from nablafx.processors.nonlinearities import DEFAULT_MLP_WEIGHTS
from nablafx.processors.siren import WEIGHTS_DIR

NAME = "pretrain"
HELP = "fit the SIREN nonlinearity or FIR of the gray-box chains to a target (writes weights/)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    modes = parser.add_subparsers(dest="mode", required=True)
    nonlinearity = modes.add_parser("nonlinearity", help="fit the SIREN MLP nonlinearity to a curve")
    nonlinearity.add_argument("--target", choices=sorted(CLIPPERS), default="tanh", help="curve to fit (default tanh)")
    nonlinearity.add_argument("--range", type=float, default=4.0, help="fit on [-range, range] (default 4)")
    nonlinearity.add_argument("--out", type=Path, default=WEIGHTS_DIR / DEFAULT_MLP_WEIGHTS)
    fir = modes.add_parser("fir", help="fit the SIREN FIR to an impulse response")
    fir.add_argument("--ir", type=Path, default=None, help="impulse response WAV (default: synthetic cabinet)")
    fir.add_argument("--taps", type=int, default=64)
    fir.add_argument("--sample-rate", type=int, default=48000)
    fir.add_argument("--out", type=Path, default=WEIGHTS_DIR / DEFAULT_FIR_WEIGHTS)
    for mode in (nonlinearity, fir):
        mode.add_argument("--steps", type=int, default=3000)
        mode.add_argument("--lr", type=float, default=1e-3, help="initial Adam learning rate (cosine decay to 0)")
        mode.add_argument("--seed", type=int, default=0)


def fit(model: nn.Module, predict, target: Tensor, steps: int, lr: float) -> float:
    """Full-batch Adam on the mean squared error with a cosine learning-rate decay (which
    removes the ripple a constant rate leaves in SIREN fits); returns the final RMS error."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (predict() - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        return float((predict() - target).pow(2).mean().sqrt())


def synthetic_cabinet_ir(num_taps: int = 64, sample_rate: int = 48000) -> Tensor:
    """A plausible guitar-cabinet-like impulse response, made here because none ships.

    RBJ sections: high-pass 90 Hz (Q 0.7), low resonance +4 dB at 120 Hz (Q 1.5),
    mid scoop -3 dB at 800 Hz, presence +5 dB at 2.5 kHz (Q 1.2), two low-pass
    sections at 5 kHz (Q 0.9; a speaker's steep roll-off). The impulse response is cut
    to ``num_taps`` with a half-Hann fade over its last quarter and scaled so its
    magnitude response peaks at 0 dB. With 64 taps (1.3 ms at 48 kHz) the low-frequency
    part is only roughly kept; the shape above ~1 kHz is what the FIR carries.
    """
    sections = [
        ("highpass", 90.0, 0.7, 0.0),
        ("peaking", 120.0, 1.5, 4.0),
        ("peaking", 800.0, 1.0, -3.0),
        ("peaking", 2500.0, 1.2, 5.0),
        ("lowpass", 5000.0, 0.9, 0.0),
        ("lowpass", 5000.0, 0.9, 0.0),
    ]
    h = torch.zeros(1, num_taps, dtype=torch.float64)
    h[0, 0] = 1.0
    for kind, cutoff, q, gain in sections:
        cutoff_hz, q_value, gain_db = (torch.tensor([[v]], dtype=torch.float64) for v in (cutoff, q, gain))
        b, a = biquad_coefficients(kind, cutoff_hz, q_value, gain_db, sample_rate)
        h = iir_filter(h, b.transpose(-1, -2), a[..., 1:].transpose(-1, -2))
    fade = num_taps // 4
    h[0, -fade:] *= torch.hann_window(2 * fade, dtype=torch.float64)[fade:]
    return normalize_ir(h[0]).float()


def normalize_ir(h: Tensor) -> Tensor:
    """Scale an impulse response so the peak of its magnitude response is 1 (0 dB)."""
    return h / torch.fft.rfft(h, n=8192).abs().max()


def load_ir(path: Path, num_taps: int, sample_rate: int) -> Tensor:
    import soundfile
    import torchaudio.functional

    audio, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    ir = torch.from_numpy(audio).mean(dim=1)
    if file_rate != sample_rate:
        ir = torchaudio.functional.resample(ir, file_rate, sample_rate)
    if ir.shape[0] < num_taps:
        ir = nn.functional.pad(ir, (0, num_taps - ir.shape[0]))
    return normalize_ir(ir[:num_taps].double()).float()


def _save(state_dict: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone().contiguous() for k, v in state_dict.items()}, out)


def run(args: argparse.Namespace) -> int:
    from matplotlib.figure import Figure

    from nablafx.processors import FIRFilter, MLPNonlinearity

    torch.manual_seed(args.seed)
    if args.mode == "nonlinearity":
        model = MLPNonlinearity(input_range=args.range, weights=None)
        x = torch.linspace(-args.range, args.range, 2001)
        target = CLIPPERS[args.target](x)
        rms = fit(model, lambda: model.transfer(x), target, args.steps, args.lr)
        _save(model.siren.state_dict(), args.out)
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        with torch.no_grad():
            ax.plot(x, target, label=f"target ({args.target})")
            ax.plot(x, model.transfer(x), "--", label=f"SIREN fit (RMS error {rms:.2e})")
        ax.set(xlabel="input", ylabel="output", title="MLP nonlinearity pretraining")
    else:
        model = FIRFilter(num_taps=args.taps, weights=None)
        target = synthetic_cabinet_ir(args.taps, args.sample_rate) if args.ir is None else load_ir(
            args.ir, args.taps, args.sample_rate
        )
        rms = fit(model, model.taps, target, args.steps, args.lr)
        _save(model.siren.state_dict(), args.out)
        fig = Figure(figsize=(10, 4))
        ax_taps, ax_mag = fig.subplots(1, 2)
        with torch.no_grad():
            taps = model.taps()
            ax_taps.plot(target, "o-", label="target")
            ax_taps.plot(taps, "x--", label=f"SIREN fit (RMS {rms:.2e})")
            freqs = torch.fft.rfftfreq(4096, 1 / args.sample_rate)
            for h, label in ((target, "target"), (taps, "fit")):
                ax_mag.semilogx(freqs[1:], 20 * torch.log10(torch.fft.rfft(h, n=4096).abs()[1:] + 1e-9), label=label)
        ax_taps.set(xlabel="tap", title="FIR taps")
        ax_mag.set(xlabel="Hz", ylabel="dB", title="magnitude response", ylim=(-60, 6))
        ax_mag.legend()
    fig.axes[0].legend()
    fig.tight_layout()
    plot_path = args.out.with_suffix(".png")
    fig.savefig(plot_path, dpi=100)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {plot_path}; RMS error {rms:.3e}")
    return 0
