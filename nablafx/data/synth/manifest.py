"""What a rendered synthetic dataset records about its generator, readable without the
renderer (which imports numba): the data module checks it on every run."""

from __future__ import annotations

import json
from pathlib import Path

from nablafx.data.errors import DataError

# Bump when a change to the dry signals or the devices changes the rendered audio.
GENERATOR_VERSION = "2"  # 2: the overdrive became causal
DRY_FOLDER = "DRY"
DRY_MANIFEST = "synth.json"


def check_generator_version(root: Path) -> None:
    """Stop if ``root`` holds synthetic audio that another generator version rendered.

    Such audio differs from what this version renders for the same arguments, so training
    on it would silently mix up results across versions.
    """
    manifest_path = Path(root) / DRY_FOLDER / DRY_MANIFEST
    if not manifest_path.is_file():
        return
    version = json.loads(manifest_path.read_text(encoding="utf-8")).get("version")
    if version != GENERATOR_VERSION:
        raise DataError(
            f"holds synthetic audio rendered by generator version {version}, but this nablafx renders "
            f"version {GENERATOR_VERSION} (see {manifest_path})",
            root,
            "delete the folder: the next run renders it again",
        )
