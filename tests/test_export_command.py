"""``nablafx export``: from a checkpoint alone, checked before success, nothing half-written."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from export_helpers import build, save_checkpoint, export_cli as run

from nablafx.commands import export as export_command
from nablafx.export import ExportCheckFailed, UnsupportedExport
from nablafx.export.formats import FORMATS
from nablafx.models import RNN, TCN

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_exports_from_the_checkpoint_and_reports_the_error(tmp_path, capsys):
    checkpoint = save_checkpoint(build("gru-k2"), tmp_path / "last.ckpt")
    out = tmp_path / "exports" / "pedal.pt"
    assert run(checkpoint, "--format", "torchscript", "--out", out, "--block-size", "128", "--author", "me") == 0
    printed = capsys.readouterr().out
    assert "max error" in printed and f"wrote {out}" in printed and "(1, 7, 64, 97, 512, 3, 128)" in printed
    extra = {"nablafx.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["nablafx.json"])
    assert meta["family"] == "gru" and meta["dataset"] == "synth-overdrive" and meta["val_esr"] == 0.0123
    assert meta["knob_names"] == ["drive", "tone"] and meta["sample_rate"] == 48_000 and meta["author"] == "me"
    assert sorted(p.name for p in out.parent.iterdir()) == ["pedal.pt"]  # no temporary files left


def test_default_output_sits_next_to_the_checkpoint(tmp_path):
    checkpoint = save_checkpoint(RNN(hidden_size=16, output_tanh=False, residual=True).eval(), tmp_path / "best.ckpt")
    assert run(checkpoint, "--format", "aidax") == 0
    document = json.loads((tmp_path / "best.json").read_text())
    assert document["in_skip"] == 1 and document["metadata"]["esr"] == 0.0123


@pytest.mark.parametrize(
    "model, argv, error, message",
    [
        (lambda: TCN(channels=4, num_blocks=2), ["--format", "aidax"], UnsupportedExport, "LSTM/GRU"),
        (lambda: RNN(hidden_size=96, output_tanh=False), ["--format", "aidax"], UnsupportedExport, "width"),
        (lambda: TCN(num_knobs=5, channels=4, num_blocks=2, conditioning="film"), ["--format", "neutone"],
         UnsupportedExport, "at most 4"),
        (lambda: RNN(hidden_size=16, output_tanh=False), ["--format", "onnx", "--gear-type", "amp"],
         UnsupportedExport, "--gear-type applies to --format nam only"),
        # a tolerance nothing can meet: the check fails after writing, and the file is removed
        (lambda: RNN(hidden_size=16, output_tanh=False), ["--format", "nam", "--tolerance", "-1"],
         ExportCheckFailed, "does not reproduce"),
    ],
)
def test_failures_leave_nothing_behind(model, argv, error, message, tmp_path):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(model().eval(), tmp_path / "m.ckpt")
    out = tmp_path / "out" / "model.file"
    with pytest.raises(error, match=message):
        run(checkpoint, "--out", out, *argv)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_help_lists_the_families_of_every_format(capsys):
    parser = argparse.ArgumentParser(prog="nablafx export", formatter_class=argparse.RawDescriptionHelpFormatter)
    export_command.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    for fmt in FORMATS.values():
        assert fmt.name in text and fmt.families in text
