"""``nablafx bench --exported``: exported artefacts timed next to PyTorch streaming, through the CLI."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from export_helpers import build, knob_names

from nablafx.cli import main
from nablafx.export import ExportMetadata, export_model

# small settings: two block sizes, 50 ms of audio each, one run -- the whole file takes a few seconds
QUICK = ["--block-sizes", "64", "256", "--stream-seconds", "0.05", "--repeats", "1"]


@pytest.fixture(autouse=True, scope="module")
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """A knob-conditioned TCN exported to TorchScript and ONNX."""
    folder = tmp_path_factory.mktemp("bench_exported")
    net = build("tcn-film-k2")
    metadata = ExportMetadata.describe(net, {"sample_rate": 48_000, "knob_names": knob_names(net)})
    return [export_model(net, metadata, fmt, folder / f"tcn{suffix}", check_samples=300).path
            for fmt, suffix in [("torchscript", ".pt"), ("onnx", ".onnx")]]


def table_rows(out: str, prefix: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.startswith(prefix)]


def test_table_has_both_runtimes_at_every_block_size(artefacts, capsys):
    assert main(["bench", "--exported", *map(str, artefacts), *QUICK]) == 0
    out = capsys.readouterr().out
    assert "pytorch stream" in out and "StreamingRuntime" in out  # the legend says which column is which
    header = next(line.split() for line in out.splitlines() if line.startswith("artefact"))
    assert header == ["artefact", "runtime", "64", "256"]
    rows = table_rows(out, "tcn.")
    labels = [" ".join(row[1:-2]) for row in rows]
    assert labels == ["torchscript", "pytorch stream", "onnx", "pytorch stream"]
    assert all(math.isfinite(float(value)) for row in rows for value in row[-2:])


def test_json_reports_speed_and_rtf_per_block_size(artefacts, capsys):
    assert main(["bench", "--exported", *map(str, artefacts), "--json", *QUICK]) == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["format"] for r in reports] == ["torchscript", "onnx"]
    for report in reports:
        assert report["family"] == "tcn" and report["block_sizes"] == [64, 256]
        assert report["inference_threads"] == 1 and report["sample_rate"] == 48_000
        for runtime in ("exported", "pytorch"):
            for n in ("64", "256"):
                x, rtf = report["x_real_time"][runtime][n], report["rtf"][runtime][n]
                assert rtf == pytest.approx(1 / x, rel=1e-3)
                # compute is the calling thread's CPU time, never more than the wall time it spans
                assert x >= 0.99 * report["x_real_time_wall"][runtime][n]


# --- what the figures mean: runtimes of known cost --------------------------------------------------------


def burn_cpu(seconds: float) -> None:
    """Spin for ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def costing(fraction: float, sample_rate: int = 48_000):
    """A ``process(block)`` that costs ``fraction`` of the block's duration: 1 / fraction x real time."""
    def process(block):
        burn_cpu(fraction * len(block) / sample_rate)
        return block
    return process


class CostingRuntime:
    """Stands in for StreamingRuntime: a quarter of real time, i.e. 4x real time."""

    def __init__(self, net):
        self.process = costing(0.25)

    def reset(self):
        pass


@pytest.fixture
def known_costs(tmp_path, monkeypatch):
    """An artefact "running" at 2x real time next to PyTorch streaming at 4x."""
    import nablafx.export.bench as export_bench

    path = tmp_path / "known.pt"
    path.write_bytes(b"")
    metadata = {"sample_rate": 48_000, "family": "tcn", "net": {"class_path": "unused"}}
    monkeypatch.setattr(export_bench, "_load", lambda p: ("torchscript", metadata, costing(0.5)))
    monkeypatch.setattr(export_bench, "StreamingRuntime", CostingRuntime)
    monkeypatch.setattr(export_bench, "from_config", lambda config: None)
    return path


KNOWN = {"exported": 2.0, "pytorch": 4.0}


def test_figures_are_audio_seconds_per_cpu_second(known_costs, capsys):
    args = ["bench", "--exported", str(known_costs), "--block-sizes", "64", "480", "--stream-seconds", "0.05",
            "--repeats", "2"]
    assert main([*args, "--json"]) == 0
    (report,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for runtime, expected in KNOWN.items():
        for n in ("64", "480"):
            x = report["x_real_time"][runtime][n]
            # the spin costs exactly 1/expected of the audio; the loop around it only adds a little
            assert 0.85 * expected <= x <= 1.001 * expected, (runtime, n, x)
            assert report["rtf"][runtime][n] == pytest.approx(1 / x, rel=1e-3)
            assert report["x_real_time_wall"][runtime][n] <= 1.001 * x
    assert main(args) == 0
    rows = table_rows(capsys.readouterr().out, "known.pt")
    assert [" ".join(row[1:-2]) for row in rows] == ["torchscript", "pytorch stream"]
    for row, expected in zip(rows, KNOWN.values()):
        assert all(0.85 * expected - 0.05 <= float(value) <= expected + 0.05 for value in row[-2:]), row


def test_missing_or_unsupported_artefacts_are_named_with_the_fix(tmp_path, artefacts, capsys):
    missing = tmp_path / "missing.onnx"
    # checked before anything is timed, even when another path is fine
    assert main(["bench", "--exported", str(artefacts[0]), str(missing)]) == 2
    err = capsys.readouterr().err
    assert "nablafx: error:" in err and str(missing) in err and "nablafx export" in err
    for name, hint in [("model.wav", "unknown artefact type"), ("amp.nam", "C++ plugins")]:
        assert main(["bench", "--exported", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert name in err and hint in err and ".pt, .onnx or .nm" in err
    assert main(["bench", "cfg.yaml", "--exported", str(artefacts[0])]) == 2
    assert "not both" in capsys.readouterr().err
