"""Export trained models to what plugins load.

- :func:`export_model` (:mod:`nablafx.export.formats`): check, write, verify against PyTorch,
  then move into place -- TorchScript, ONNX, Neutone, NAM, RTNeural, AIDA-X, Proteus;
- :class:`ExportMetadata`: what every export records about the model;
- :func:`nablafx.export.bench.bench_exported`: speed of an exported artefact vs PyTorch.

One format per module: :mod:`~nablafx.export.torchscript`, :mod:`~nablafx.export.onnx_export`,
:mod:`~nablafx.export.neutone`, :mod:`~nablafx.export.nam`, :mod:`~nablafx.export.rtneural`
(RTNeural and AIDA-X), :mod:`~nablafx.export.proteus`; the streaming step they share is in
:mod:`~nablafx.export.streaming`.
"""

from nablafx.export.errors import ExportCheckFailed, UnsupportedExport
from nablafx.export.formats import FORMATS, ExportResult, check_export, export_model, formats_help
from nablafx.export.metadata import ExportMetadata

__all__ = [
    "FORMATS",
    "ExportCheckFailed",
    "ExportMetadata",
    "ExportResult",
    "UnsupportedExport",
    "check_export",
    "export_model",
    "formats_help",
]
