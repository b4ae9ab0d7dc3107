"""Export trained models to what plugins load, and stream them in Python.

- :func:`export_model` (:mod:`nablafx.export.formats`): check, write, verify against PyTorch,
  then move into place -- TorchScript, ONNX, Neutone, NAM, RTNeural, AIDA-X, Proteus;
- :class:`ExportMetadata`: what every export records about the model;
- :class:`StreamingRuntime`: ``reset()`` / ``process(block, knobs)`` for any block size;
- :func:`nablafx.export.bench.bench_exported`: speed of an exported artefact vs PyTorch.

One format per module: :mod:`~nablafx.export.torchscript`, :mod:`~nablafx.export.onnx_export`,
:mod:`~nablafx.export.neutone`, :mod:`~nablafx.export.nam`, :mod:`~nablafx.export.rtneural`
(RTNeural and AIDA-X), :mod:`~nablafx.export.proteus`; the streaming step they share is in
:mod:`~nablafx.export.streaming`.
"""

from nablafx.export.errors import ExportCheckFailed, UnsupportedExport
from nablafx.export.formats import FORMATS, ExportResult, check_export, export_model, formats_help
from nablafx.export.metadata import ExportMetadata
from nablafx.export.runtime import StreamingRuntime

__all__ = [
    "FORMATS",
    "ExportCheckFailed",
    "ExportMetadata",
    "ExportResult",
    "StreamingRuntime",
    "UnsupportedExport",
    "check_export",
    "export_model",
    "formats_help",
]
