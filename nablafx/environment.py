"""Is this Python environment one nablafx can run in? Checked by ``nablafx doctor``.

The failure this guards against: torchaudio wheels are built against one exact torch
release, and a resolver that takes a newer torchaudio patch (2.11.1 with torch 2.11.0)
installs a torchaudio whose compiled library does not load (``undefined symbol``).
``constraints.txt`` at the repository root pins the whole tested set; this module says
what is wrong in an environment that drifted from it, and how to fix it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

#: (distribution, import name) of the core dependencies, in the order they are checked.
CORE = (
    ("torch", "torch"), ("torchaudio", "torchaudio"), ("lightning", "lightning"),
    ("jsonargparse", "jsonargparse"), ("auraloss", "auraloss"), ("wandb", "wandb"),
    ("soundfile", "soundfile"), ("numpy", "numpy"), ("scipy", "scipy"), ("matplotlib", "matplotlib"),
    ("PyYAML", "yaml"), ("numba", "numba"), ("pyloudnorm", "pyloudnorm"), ("optuna", "optuna"),
)
CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"
FIX = 'reinstall the tested set: pip install -c constraints.txt -e ".[dev]" (from the repository root)'


@dataclass
class Finding:
    package: str
    version: str | None
    problem: str | None  # None: fine

    def __str__(self) -> str:
        status = "ok" if self.problem is None else f"PROBLEM: {self.problem}"
        return f"{self.package:<14} {self.version or '-':<14} {status}"


def _release(version: str) -> str:
    """``2.11.0+cpu`` -> ``2.11.0``."""
    return version.split("+")[0]


def pinned_versions(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``name -> version`` from a constraints file (``name==version`` lines); {} if absent."""
    if not path.is_file():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_environment(constraints: Path = CONSTRAINTS) -> list[Finding]:
    """One finding per core dependency: installed version, and what is wrong with it if anything."""
    pins = pinned_versions(constraints)
    findings = []
    for distribution, module in CORE:
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            findings.append(Finding(distribution, None, "not installed"))
            continue
        problem = None
        try:
            importlib.import_module(module)
            if module == "torchaudio":
                _exercise_torchaudio()
        except Exception as error:  # an import that fails for any reason is the finding
            problem = f"import fails: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        pinned = pins.get(_normalise(distribution))
        if problem is None and pinned is not None and _release(version) != _release(pinned):
            problem = f"constraints.txt pins {pinned}"
        findings.append(Finding(distribution, version, problem))
    by_name = {f.package: f for f in findings}
    torch_f, audio_f = by_name["torch"], by_name["torchaudio"]
    if torch_f.version and audio_f.version and _release(torch_f.version) != _release(audio_f.version):
        pair = f"torchaudio {audio_f.version} is built for torch {_release(audio_f.version)}, not {torch_f.version}"
        audio_f.problem = pair if audio_f.problem is None else f"{audio_f.problem} ({pair})"
    return findings


def _exercise_torchaudio() -> None:
    """Run the torchaudio call nablafx uses, so a library that imports but cannot run is caught."""
    import torch
    import torchaudio.functional

    torchaudio.functional.resample(torch.zeros(1, 64), 48_000, 44_100)


def report(findings: list[Finding]) -> str:
    lines = [str(f) for f in findings]
    if any(f.problem for f in findings):
        lines.append(f"fix: {FIX}")
    return "\n".join(lines)
