"""The export formats and the one routine that writes any of them safely.

:func:`export_model` refuses a model the format cannot express before writing anything,
writes the artefact to a temporary file next to the target, runs it through its consumer
on a test signal (:mod:`nablafx.export.check`) and only then moves it into place; on any
failure the temporary file is removed, so nothing half-written or unverified is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from nablafx.export import nam, neutone, onnx_export, proteus, rtneural, torchscript
from nablafx.export.check import DEFAULT_TOLERANCE, IRREGULAR_BLOCKS, check_knobs, check_signal
from nablafx.export.errors import ExportCheckFailed, UnsupportedExport
from nablafx.export.families import STREAMING_FAMILIES
from nablafx.export.metadata import ExportMetadata
from nablafx.errors import ConfigError
from nablafx.files import replaced_atomically


@dataclass(frozen=True)
class ExportFormat:
    """How to check, write and verify one format.

    ``check_blocks`` are the block sizes a streaming format is verified with (None for
    formats run in one pass); ``options`` the extra keyword options ``write`` accepts.
    """

    name: str
    suffix: str
    families: str
    description: str
    check: Callable[[nn.Module, ExportMetadata], None]
    write: Callable[..., None]
    verify: Callable[..., dict[str, float]]
    check_blocks: tuple[int, ...] | None = None
    options: tuple[str, ...] = ()
    notes: Callable[[nn.Module], list[str]] = field(default=lambda net: [])


FORMATS: dict[str, ExportFormat] = {
    "torchscript": ExportFormat(
        "torchscript", ".pt", STREAMING_FAMILIES, "TorchScript streaming module (libtorch hosts, torch.jit.load)",
        torchscript.check, torchscript.write, torchscript.verify, check_blocks=IRREGULAR_BLOCKS,
    ),
    "onnx": ExportFormat(
        "onnx", ".onnx", onnx_export.ONNX_FAMILIES, "ONNX streaming step, state as inputs/outputs",
        onnx_export.check, onnx_export.write, onnx_export.verify, check_blocks=IRREGULAR_BLOCKS,
    ),
    "neutone": ExportFormat(
        "neutone", ".nm", STREAMING_FAMILIES + "; <= 4 knobs", "Neutone FX model (neutone-sdk)",
        neutone.check, neutone.write, neutone.verify, check_blocks=(64, 512),
    ),
    "nam": ExportFormat(
        "nam", ".nam", nam.SUPPORTED, "Neural Amp Modeler .nam (LSTM / WaveNet layouts, version 0.5.4)",
        nam.check, nam.write, nam.verify, options=("gear_type", "tone_type", "gear_make", "gear_model"),
    ),
    "rtneural": ExportFormat(
        "rtneural", ".json", rtneural.SUPPORTED_RTNEURAL, "RTNeural JSON, Keras layout; knobs as extra inputs",
        rtneural.check, rtneural.write, rtneural.verify,
    ),
    "aidax": ExportFormat(
        "aidax", ".json", rtneural.SUPPORTED_AIDAX, "AIDA-X model JSON (RTNeural + in_skip, gains, metadata)",
        rtneural.check_aidax, rtneural.write_aidax, rtneural.verify,
    ),
    "proteus": ExportFormat(
        "proteus", ".json", proteus.SUPPORTED, "GuitarML / Proteus SimpleRNN JSON",
        proteus.check, proteus.write, proteus.verify,
        notes=lambda net: [note] if (note := proteus.size_note(net)) else [],
    ),
}


@dataclass
class ExportResult:
    path: Path
    format: str
    errors: dict[str, float]
    metadata: ExportMetadata
    notes: list[str]

    @property
    def max_error(self) -> float:
        return max(self.errors.values())


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ConfigError(f"unknown export format {name!r}; valid: {', '.join(FORMATS)}")
    return FORMATS[name]


def check_export(net: nn.Module, metadata: ExportMetadata, format_name: str,
                 options: dict | None = None) -> ExportFormat:
    """Raise :class:`UnsupportedExport` with the reason when ``net`` does not fit the format."""
    fmt = get_format(format_name)
    unknown = sorted(set(options or {}) - set(fmt.options))
    for key in unknown:
        owners = [f.name for f in FORMATS.values() if key in f.options]
        raise UnsupportedExport(
            f"--{key.replace('_', '-')} applies to --format {' / '.join(owners) or '(none)'} only, not {format_name}"
        )
    fmt.check(net, metadata)
    return fmt


def export_model(net: nn.Module, metadata: ExportMetadata, format_name: str, out: str | Path, *,
                 options: dict | None = None, block_size: int | None = None,
                 tolerance: float = DEFAULT_TOLERANCE, check_samples: int = 12_000) -> ExportResult:
    """Check, write, verify and move into place one export of ``net`` (in eval mode).

    Args:
        options: format-specific options (NAM: gear_type, tone_type, gear_make, gear_model).
        block_size: the host's buffer size; streaming formats are also verified with it.
        tolerance: largest absolute sample error accepted on the test signal.
        check_samples: length of the test signal.
    """
    options = {key: value for key, value in (options or {}).items() if value is not None}
    net.eval()
    fmt = check_export(net, metadata, format_name, options)
    if block_size is not None and block_size < 1:
        raise ConfigError(f"--block-size must be >= 1, got {block_size}")
    out = Path(out)
    with replaced_atomically(out) as temporary:
        fmt.write(net, metadata, temporary, **options)
        x = check_signal(check_samples, metadata.sample_rate or 48_000)
        knobs = check_knobs(net.num_knobs)
        if fmt.check_blocks is None:
            errors = fmt.verify(temporary, net, x, knobs)
        else:
            blocks = fmt.check_blocks + ((block_size,) if block_size else ())
            errors = fmt.verify(temporary, net, x, knobs, blocks=blocks)
        worst = max(errors.values())
        if not worst <= tolerance:  # also catches NaN
            details = ", ".join(f"{label}: {error:.3g}" for label, error in errors.items())
            raise ExportCheckFailed(
                f"the exported {format_name} artefact does not reproduce the model: max error {worst:.3g} > "
                f"tolerance {tolerance:g} ({details}); nothing was written"
            )
    return ExportResult(out, format_name, errors, metadata, fmt.notes(net))


def formats_help() -> str:
    """One line per format: name, file suffix and the model families it takes."""
    width = max(map(len, FORMATS))
    return "\n".join(
        f"  {fmt.name:<{width}}  {fmt.suffix:<6} {fmt.description}\n  {'':<{width}}  {'':<6} families: {fmt.families}"
        for fmt in FORMATS.values()
    )


__all__ = ["FORMATS", "ExportCheckFailed", "ExportFormat", "ExportResult", "UnsupportedExport",
           "check_export", "export_model", "formats_help"]
