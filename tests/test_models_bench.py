"""``nablafx bench``: the report has the promised keys and counts MACs the way the formulas say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nablafx import benchmark
from nablafx.commands import bench
from nablafx.models import RNN, S4, TCN

CFG = Path(__file__).resolve().parents[1] / "cfg" / "model"

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def run_bench(capsys, *argv: str) -> list[dict]:
    assert bench.main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def impulse_reach(model: torch.nn.Module, length: int) -> int:
    """How many output samples an input impulse at t = 0 moves (forward-mode derivative)."""
    model = model.double().eval()
    x = 0.1 * torch.randn(1, 1, length, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    impulse = torch.zeros_like(x)
    impulse[..., 0] = 1.0
    _, tangent = torch.func.jvp(lambda signal: model(signal)[0], (x,), (impulse,))
    return int(torch.nonzero(tangent[0, 0]).max()) + 1


def test_quick_json(capsys):
    (report,) = run_bench(capsys, "--quick", "--json", str(CFG / "tcn" / "tcn-45-s-16.yaml"))
    assert report["params"] == 7_457
    # per sample: 1 -> 16 conv (7 taps) + 4 x 16 -> 16 conv (7 taps) + 5 residual gains + head
    assert report["macs_per_sample"] == 16 * 7 + 4 * 16 * 16 * 7 + 5 * 16 + 16
    model, _ = bench.load_model(CFG / "tcn" / "tcn-45-s-16.yaml")
    assert report["receptive_field"] == impulse_reach(model, 2500) == 2047


def test_quick_json_gcn(capsys):
    (report,) = run_bench(capsys, "--quick", "--json", str(CFG / "gcn" / "gcn-45-s-16.yaml"))
    assert report["params"] == 16_161
    # per sample: 1 -> 32 conv (7 taps) + 4 x 16 -> 32 conv (7 taps) + 4 residual mixes 16 -> 16 (the last
    # block's mix feeds nothing and is not run) + the head on 5 x 16 concatenated skips
    assert report["macs_per_sample"] == 32 * 7 + 4 * 16 * 32 * 7 + 4 * 16 * 16 + 5 * 16
    model, _ = bench.load_model(CFG / "gcn" / "gcn-45-s-16.yaml")
    assert report["receptive_field"] == impulse_reach(model, 2500) == 2047


def test_quick_table_lists_every_config_of_a_folder(capsys):
    assert bench.main(["--quick", str(CFG / "rnn")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "params", "rf", "MACs/sample"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) == {p.stem for p in (CFG / "rnn").glob("*.yaml")}
    assert rows["lstm-32"] == ["4,513", "inf", f"{4 * 32 * (1 + 32) + 32:,}"]  # recurrent: unbounded


FULL_ARGS = ["--batch", "2", "--seconds", "0.05", "--infer-seconds", "0.05", "--stream-seconds", "0.02",
             "--block-sizes", "32", "100", "64", "--repeats", "1"]


def test_full_report_figures_follow_from_the_measured_times(capsys, monkeypatch):
    """Every timing is turned into the promised unit: with each timed run taking exactly 0.125 s,
    training throughput = batch x seconds / 0.125, x real time = audio seconds actually streamed / 0.125."""
    elapsed, runs = 0.125, []

    def fixed_time(fn, repeats=1):
        fn()  # the real work still runs once (shapes, state hand-over)
        runs.append(repeats)
        return benchmark.Timing(cpu=elapsed, wall=elapsed)

    monkeypatch.setattr(benchmark, "best_time", fixed_time)
    (report,) = run_bench(capsys, "--json", str(CFG / "s4" / "s4-tvf-b4-s4-c16-k1.yaml"), *FULL_ARGS)
    assert report["params"] == 11_185 and report["inference_threads"] == 1
    assert report["train_batch"] == [2, 0.05]
    assert report["train_audio_seconds_per_second"] == pytest.approx(2 * 0.05 / elapsed)
    assert report["x_real_time_offline"] == pytest.approx(0.05 / elapsed)
    # 0.02 s = 960 samples, cut to whole blocks: 960 for 32 and 64, 900 for 100
    assert report["x_real_time_stream"] == pytest.approx({"32": 0.02 / elapsed, "100": (900 / 48_000) / elapsed,
                                                          "64": 0.02 / elapsed}, rel=1e-3)
    assert report["stream_overhead_64"] == pytest.approx(0.05 / 0.02)  # (0.05 s / t) / (0.02 s / t)
    assert runs == [1] * 5  # training, offline, three block sizes


class FakeClock:
    """Stands in for the ``time`` module: time moves only when the model under test runs."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    thread_time = perf_counter


def test_times_real_time_streams_the_example_signal_and_stops_at_the_budget(monkeypatch):
    clock, blocks = FakeClock(), []
    monkeypatch.setattr(benchmark, "time", clock)

    def process(block):
        blocks.append(block.copy())
        clock.now += 0.5  # each 64-sample block takes half a second

    speed = benchmark.times_real_time(process, 48_000, 64, seconds=1.0, budget=1.2, repeats=2, warm_up=3)
    # per run: blocks at 0.5, 1.0, 1.5 s; the third crosses the 1.2 s budget and ends the run
    assert len(blocks) == 3 + 2 * 3
    assert speed == benchmark.Timing(cpu=3 * 64 / 48_000 / 1.5, wall=3 * 64 / 48_000 / 1.5)
    signal = benchmark.example_signal(1, (48_000 // 64 + 3) * 64).numpy().reshape(-1, 64)
    np.testing.assert_array_equal(np.stack(blocks[:6]), signal[:6])  # warm-up, then the timed blocks in order
    np.testing.assert_array_equal(blocks[6], signal[3])  # each run streams the same audio again


def test_full_report_with_real_timings(capsys):
    (report,) = run_bench(capsys, "--json", str(CFG / "tcn" / "tcn-45-s-16.yaml"), *FULL_ARGS)
    assert set(report) == {"model", "params", "receptive_field", "macs_per_sample", "train_audio_seconds_per_second",
                           "train_threads", "train_batch", "inference_threads", "x_real_time_offline",
                           "x_real_time_stream", "stream_overhead_64"}
    assert list(report["x_real_time_stream"]) == ["32", "100", "64"]  # in the order asked for
    assert report["stream_overhead_64"] == pytest.approx(
        report["x_real_time_offline"] / report["x_real_time_stream"]["64"], rel=0.02, abs=0.01)
    assert report["train_threads"] == torch.get_num_threads()
    text = bench.format_report("tcn", report)  # the printed "x real time" and RTFs are inverses
    for block, speed in report["x_real_time_stream"].items():
        row = next(line.split() for line in text.splitlines() if line.split()[:1] == [block])
        assert float(row[1].rstrip("x")) == pytest.approx(speed, abs=0.051)  # printed with 1 decimal
        assert float(row[2]) == pytest.approx(1 / speed, abs=1e-4)  # printed with 4 decimals


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


# --- --stream-memory --------------------------------------------------------------------------------------


def test_resident_bytes_sees_memory_being_touched():
    """RSS as the kernel reports it (VmRSS in /proc/self/status), and 64 MiB touched show up as 64 MiB."""
    vm_rss = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    assert abs(bench.resident_bytes() - vm_rss) < 8 * bench.MIB
    before = bench.resident_bytes()
    block = torch.ones(16 * bench.MIB)  # 64 MiB of float32, written (touched) by ones()
    grown = bench.resident_bytes() - before
    assert 60 * bench.MIB < grown < 72 * bench.MIB, grown / bench.MIB
    del block


class Leaky(torch.nn.Module):
    """Identity that keeps what it allocates: the leak the benchmark is there to catch.

    Every call keeps one small tensor (a Python object); every 150th call also keeps 34 MiB,
    above glibc's largest mmap threshold (32 MiB), so those pages are fresh and show in the RSS.
    """

    num_knobs, latency = 0, 0
    LARGE = 9_000_000  # float32 values: 34.3 MiB

    def __init__(self):
        super().__init__()
        self.kept, self.calls = [], 0

    def forward(self, x, knobs=None, state=None):
        self.calls += 1
        self.kept.append(torch.ones(self.LARGE) if self.calls % 150 == 0 else torch.zeros(1))
        return x, state


LEAK_PROBE = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from test_models_bench import Leaky
from nablafx.commands import bench
print(json.dumps(bench.stream_memory(Leaky(), seconds=1.0, every_seconds=0.2, block_size=64)))
"""


def test_stream_memory_reports_growth_of_a_leaking_model():
    # A fresh process: in the test session, memory that earlier tests left to the allocator
    # (or that glibc trims back meanwhile) moves the RSS by tens of MiB either way.
    probe = subprocess.run([sys.executable, "-c", LEAK_PROBE, str(Path(__file__).parent)],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.splitlines()[-1])
    blocks = [row["blocks"] for row in result["samples"]]
    assert blocks == [1, 150, 300, 450, 600, 750]  # after block 1, then every 0.2 s (150 blocks)
    assert [row["audio_seconds"] for row in result["samples"]] == [b * 64 / 48_000 for b in blocks]
    leaked = Leaky.LARGE * 4 / bench.MIB  # per 150 blocks
    assert 5 * leaked - 8 < result["growth_mib"] < 5 * leaked + 8
    assert 4 * leaked - 8 < result["growth_after_first_interval_mib"] < 4 * leaked + 8
    assert result["py_objects_growth"] >= 750 - 150 - 5  # one tensor per block after the first interval
    rss = [row["rss_bytes"] for row in result["samples"]]
    assert result["growth_mib"] == pytest.approx((rss[-1] - rss[0]) / bench.MIB)
    assert result["growth_after_first_interval_mib"] == pytest.approx((rss[-1] - rss[1]) / bench.MIB)
    per_hour = (rss[-1] - rss[1]) / bench.MIB / ((750 - 150) * 64 / 48_000 / 3600)
    assert result["growth_mib_per_hour"] == pytest.approx(per_hour)


def test_stream_memory_table_for_a_config(capsys):
    """1.5 s of lstm-32 in 64-sample blocks: one row per sample, audio time vs RSS and growth."""
    config = str(CFG / "rnn" / "lstm-32.yaml")
    assert bench.main(["--stream-memory", config, "--minutes", "0.025", "--every-minutes", "0.01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "64-sample blocks at 48000 Hz through StreamingRuntime, 1 thread" in lines[0]
    assert lines[1].split() == ["audio", "time", "blocks", "wall", "s", "x", "real", "time", "RSS", "MiB",
                                "growth", "MiB", "py", "objects"]
    rows = [line.split() for line in lines[2:-1]]
    # 1.5 s = 1125 blocks, sampled after block 1, every 0.6 s (450 blocks) and at the end
    assert [row[0] for row in rows] == ["0:00:00.0", "0:00:00.6", "0:00:01.2", "0:00:01.5"]
    assert [int(row[1]) for row in rows] == [1, 450, 900, 1125]
    rss = [float(row[4]) for row in rows]
    for row, value in zip(rows, rss):
        assert float(row[5]) == pytest.approx(value - rss[0], abs=0.11)  # growth = RSS - first RSS
    for row in rows[1:]:  # x real time = audio time / wall time (printed to 0.1 s and 0.1x)
        audio, wall = int(row[1]) * 64 / 48_000, float(row[2])
        assert audio / (wall + 0.05) - 0.05 <= float(row[3]) <= audio / max(wall - 0.05, 1e-3) + 0.05
    assert lines[-1].startswith("growth: ") and "of audio" in lines[-1] and "MiB per hour" in lines[-1]
    argv = ["--stream-memory", config, "--minutes", "0.01", "--every-minutes", "0.005", "--block-size", "100", "--json"]
    assert bench.main(argv) == 0
    (report,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert report["model"] == config and report["block_size"] == 100
    assert [s["blocks"] for s in report["samples"]] == [1, 144, 288]  # 0.6 s = 288 blocks of 100, every 144
    assert abs(report["py_objects_growth"]) < 50  # LSTM streaming keeps nothing per block
