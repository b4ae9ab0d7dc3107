"""``nablafx bench --exported``: exported artefacts timed next to PyTorch streaming, through the CLI."""

from __future__ import annotations

import json
import math

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


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_table_has_both_runtimes_at_every_block_size(artefacts, capsys):
    assert main(["bench", "--exported", *map(str, artefacts), *QUICK]) == 0
    out = capsys.readouterr().out
    assert "pytorch stream" in out and "StreamingRuntime" in out  # the legend says which column is which
    rows = [line.split() for line in out.splitlines() if line.startswith("tcn.")]
    labels = [" ".join(row[1:-2]) for row in rows]
    assert labels == ["torchscript", "pytorch stream", "onnx", "pytorch stream"]
    assert all(positive(float(value)) for row in rows for value in row[-2:])


def test_json_reports_speed_and_rtf_per_block_size(artefacts, capsys):
    assert main(["bench", "--exported", *map(str, artefacts), "--json", *QUICK]) == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["format"] for r in reports] == ["torchscript", "onnx"]
    for report in reports:
        assert report["family"] == "tcn" and report["block_sizes"] == [64, 256]
        assert report["inference_threads"] == 1
        for runtime in ("exported", "pytorch"):
            for n in ("64", "256"):
                x, rtf = report["x_real_time"][runtime][n], report["rtf"][runtime][n]
                assert positive(x) and positive(rtf)
                assert rtf == pytest.approx(1 / x, rel=1e-2)


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
