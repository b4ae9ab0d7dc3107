"""``nablafx bench``: the report has the promised keys and counts MACs the way the formulas say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nablafx.commands import bench
from nablafx.models import RNN, S4, TCN

CFG = Path(__file__).resolve().parents[1] / "cfg" / "model"

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def run_bench(capsys, *argv: str) -> list[dict]:
    assert bench.main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_quick_json(capsys):
    (report,) = run_bench(capsys, "--quick", "--json", str(CFG / "tcn" / "tcn-45-s-16.yaml"))
    assert report["params"] == 7_457 and report["receptive_field"] == 2047
    # per sample: 1 -> 16 conv (7 taps) + 4 x 16 -> 16 conv (7 taps) + 5 residual gains + head
    assert report["macs_per_sample"] == 16 * 7 + 4 * 16 * 16 * 7 + 5 * 16 + 16


def test_full_report_keys(capsys):
    (report,) = run_bench(
        capsys, "--json", str(CFG / "s4" / "s4-tvf-b4-s4-c16-k1.yaml"),
        "--batch", "1", "--seconds", "0.05", "--infer-seconds", "0.05", "--stream-seconds", "0.02",
        "--block-sizes", "32", "64", "--repeats", "1",
    )
    for key in ("params", "receptive_field", "macs_per_sample", "train_audio_seconds_per_second",
                "rtf_offline", "rtf_stream", "stream_overhead_64"):
        assert key in report
    assert set(report["rtf_stream"]) == {"32", "64"} and report["params"] == 11_185


def test_macs_of_recurrent_models():
    assert bench.count_macs(RNN(hidden_size=32)) == pytest.approx(4 * 32 * (1 + 32) + 32)
    # S4: expand, per block (linear + 8 N + 1 per channel + residual), contract
    H, N, B = 16, 4, 4
    expected = H + B * (H * H + H * (8 * N + 1) + H) + H
    assert bench.count_macs(S4(channels=H, num_blocks=B, state_size=N)) == pytest.approx(expected)
    # TFiLM's LSTM runs once per 128-sample control block
    plain, modulated = TCN(), TCN(conditioning="tfilm")
    lstm = 4 * 32 * (16 + 32)
    assert bench.count_macs(modulated) - bench.count_macs(plain) == pytest.approx(5 * lstm / 128)


def test_bad_path_reports_error(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {lr: 0.1}\n")
    assert bench.main(["--quick", str(bad)]) == 1
    assert "no model.net" in capsys.readouterr().err


def test_checkpoint_input(capsys, tmp_path):
    from nablafx.core import to_config

    net = TCN(channels=4, num_blocks=2)
    checkpoint = {
        "nablafx": {"net": to_config(net)},
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "hyper_parameters": {"lr": 0.005, "tbptt_chunk": None},
    }
    torch.save(checkpoint, tmp_path / "last.ckpt")
    (report,) = run_bench(capsys, "--quick", "--json", str(tmp_path / "last.ckpt"))
    assert report["params"] == sum(p.numel() for p in net.parameters())
