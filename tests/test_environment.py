"""``nablafx doctor`` and the CLI's handling of broken installs and of its own errors."""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

import nablafx.cli as cli
from nablafx import environment
from nablafx.errors import ConfigError


def test_this_environment_is_healthy_and_matches_the_constraints():
    findings = environment.check_environment()
    assert [f.package for f in findings] == [name for name, _ in environment.CORE]
    assert all(f.problem is None for f in findings), environment.report(findings)
    pins = environment.pinned_versions()
    assert pins["torch"] == pins["torchaudio"] == "2.11.0"


def test_a_torchaudio_built_for_another_torch_is_reported(monkeypatch, capsys):
    real_version = importlib.metadata.version
    real_import = importlib.import_module

    def version(name):
        return "2.11.1" if name == "torchaudio" else real_version(name)

    def import_module(name, *args):
        if name == "torchaudio":
            raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")
        return real_import(name, *args)

    monkeypatch.setattr(environment.importlib.metadata, "version", version)
    monkeypatch.setattr(environment.importlib, "import_module", import_module)
    problem = {f.package: f.problem for f in environment.check_environment()}["torchaudio"]
    assert "undefined symbol" in problem and "built for torch 2.11.1, not 2.11.0" in problem
    assert cli.main(["doctor", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "torchaudio" in out and "pip install -c constraints.txt" in out and "numpy" not in out


def test_a_drifted_version_is_reported(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# comment\nnumpy==1.0.0\nscipy==0.1 ; python_version >= '3'\n")
    assert environment.pinned_versions(constraints) == {"numpy": "1.0.0", "scipy": "0.1"}
    problems = {f.package: f.problem for f in environment.check_environment(constraints) if f.problem}
    assert set(problems) == {"numpy", "scipy"} and problems["numpy"] == "constraints.txt pins 1.0.0"


def test_fit_with_a_broken_training_stack_says_what_to_do(monkeypatch, capsys):
    def broken(name, *args, **kwargs):
        if name == "nablafx.lightning_cli":
            raise OSError("Could not load this library: libtorchaudio.so")
        return real_import(name, *args, **kwargs)

    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) else __builtins__.__import__
    monkeypatch.delitem(__import__("sys").modules, "nablafx.lightning_cli", raising=False)
    monkeypatch.setattr("builtins.__import__", broken)
    assert cli.main(["fit", "-c", "cfg/quickstart.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nablafx: error: the training stack does not load (OSError")
    assert "nablafx doctor" in err and "constraints.txt" in err


def test_user_errors_get_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    def user_mistake(args):
        raise ConfigError("--knobs 2: values must lie in [0, 1]")

    def bug(args):
        raise ValueError("an internal invariant broke")

    import nablafx.commands.doctor as doctor

    monkeypatch.setattr(doctor, "run", user_mistake)
    assert cli.main(["doctor"]) == 2
    assert capsys.readouterr().err == "nablafx: error: --knobs 2: values must lie in [0, 1]\n"
    monkeypatch.setattr(doctor, "run", bug)
    with pytest.raises(ValueError, match="internal invariant"):
        cli.main(["doctor"])
