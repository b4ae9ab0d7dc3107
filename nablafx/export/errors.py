"""Why an export can fail: the model does not fit the format, or the artefact does not match."""

from nablafx.errors import NablaError


class UnsupportedExport(NablaError):
    """The model cannot be expressed in the requested format; raised before anything is written."""


class ExportCheckFailed(NablaError):
    """The written artefact, run by its consumer, does not reproduce the PyTorch model."""
