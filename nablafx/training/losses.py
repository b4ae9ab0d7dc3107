"""Training loss: a weighted sum of a time-domain and a frequency-domain term.

    L = w_td * mean|y - y_hat| + w_fd * MR-STFT(y_hat, y)

MR-STFT is auraloss' multi-resolution STFT loss (spectral convergence + log
magnitude) with the resolutions of the NablAFx papers: FFT 1024/2048/512, hops
120/240/50, windows 600/1200/240, Hann (Yamamoto et al., 2020; arXiv 2502.11668).
"""

from __future__ import annotations

import auraloss
from torch import Tensor, nn
from nablafx.errors import ConfigError


def mrstft_loss() -> nn.Module:
    """auraloss' MR-STFT with the papers' resolutions (auraloss clamps |X|^2 before the log)."""
    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[1024, 2048, 512],
        hop_sizes=[120, 240, 50],
        win_lengths=[600, 1200, 240],
        w_sc=1.0,
        w_log_mag=1.0,
        w_lin_mag=0.0,
    )


class TimeFrequencyLoss(nn.Module):
    """``w_td * L1 + w_fd * MR-STFT``; returns the total and both unweighted terms."""

    def __init__(self, w_td: float = 1.0, w_fd: float = 0.1):
        super().__init__()
        if w_td < 0 or w_fd < 0 or w_td + w_fd == 0:
            raise ConfigError(f"loss weights must be >= 0 and not both 0, got w_td={w_td}, w_fd={w_fd}")
        self.w_td = w_td
        self.w_fd = w_fd
        self.l1 = nn.L1Loss()
        self.mrstft = mrstft_loss()

    def forward(self, y_hat: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        l1 = self.l1(y_hat, y)
        mrstft = self.mrstft(y_hat, y)
        return self.w_td * l1 + self.w_fd * mrstft, l1, mrstft
