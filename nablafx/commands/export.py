"""``nablafx export CHECKPOINT --format F``: write a plugin-ready artefact, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from nablafx.export.check import DEFAULT_TOLERANCE

NAME = "export"
HELP = "export a trained checkpoint for a plugin (TorchScript, ONNX, Neutone, NAM, RTNeural, AIDA-X, Proteus)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nablafx.export.formats import FORMATS, formats_help
    from nablafx.export.nam import GEAR_TYPES, TONE_TYPES

    parser.epilog = (
        "formats and the model families they take:\n"
        f"{formats_help()}\n\n"
        "Before reporting success the artefact is loaded by its consumer (torch.jit, onnxruntime,\n"
        "neutone-sdk, neural-amp-modeler's loader, or a reader of the file), run on a test signal\n"
        "(with the knobs at 0.3..0.7) in one call and in blocks of several sizes, and compared with\n"
        "the PyTorch model; above --tolerance nothing is written.\n\n"
        "examples:\n"
        "  nablafx export logs/nablafx/RUN/checkpoints/last.ckpt --format nam --out amp.nam --gear-type amp\n"
        "  nablafx export model.ckpt --format aidax --out pedal.json --name 'My pedal' --author me\n"
        "  nablafx export model.ckpt --format torchscript --out model.pt --block-size 128"
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by `nablafx fit` (.ckpt)")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="artefact to write (see below)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output file (default: next to the checkpoint, with the format's suffix)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="the host's buffer size: streaming formats are also checked in blocks of N "
                        "(they accept any block size)")
    parser.add_argument("--sample-rate", type=int, default=None,
                        help="sample rate in Hz the artefact runs at (default: the checkpoint's training data "
                        "rate). Another rate than the training rate rebuilds a gray-box chain at it (filters "
                        "keep their Hz, compressor times their ms; FIR and dynamic-controller stages are "
                        "refused) and is refused for black-box nets (export at the training rate and let "
                        "the host resample, or retrain); with no rate in the checkpoint it is recorded as given")
    parser.add_argument("--name", default=None, help="model name shown by the plugin (default: <data>-<family>, cut to 30 characters)")
    parser.add_argument("--author", default=None,
                        help="who made the model (NAM modeled_by, AIDA-X author, Neutone author)")
    parser.add_argument("--description", default=None, help="one-line description (Neutone: <= 150 characters)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"largest absolute sample error accepted (default {DEFAULT_TOLERANCE:g})")
    nam_group = parser.add_argument_group("NAM metadata (--format nam)")
    nam_group.add_argument("--gear-type", choices=GEAR_TYPES, default=None)
    nam_group.add_argument("--tone-type", choices=TONE_TYPES, default=None)
    nam_group.add_argument("--gear-make", default=None)
    nam_group.add_argument("--gear-model", default=None)


def run(args: argparse.Namespace) -> int:
    from nablafx.export.formats import export_model, get_format
    from nablafx.export.metadata import ExportMetadata
    from nablafx.export.rate import at_sample_rate, trained_rate
    from nablafx.training.checkpoint import load_checkpoint

    net, meta = load_checkpoint(args.checkpoint)
    trained = trained_rate(net, meta.get("sample_rate"))
    net, sample_rate = at_sample_rate(net, meta.get("sample_rate"), args.sample_rate)
    metadata = ExportMetadata.describe(
        net, meta, sample_rate=sample_rate, name=args.name, author=args.author, description=args.description
    )
    out = args.out or args.checkpoint.with_suffix(get_format(args.format).suffix)
    options = {"gear_type": args.gear_type, "tone_type": args.tone_type,
               "gear_make": args.gear_make, "gear_model": args.gear_model}
    result = export_model(net, metadata, args.format, out, options=options,
                          block_size=args.block_size, tolerance=args.tolerance)
    if trained is not None and sample_rate != trained:
        print(f"rebuilt the gray-box chain at {sample_rate} Hz (trained at {trained} Hz): "
              "filters keep their Hz, compressor times their ms")
    print(f"checked {args.format} against PyTorch on {metadata.family} {metadata.name!r}:")
    for label, error in result.errors.items():
        print(f"  {label:<40} max error {error:.2e}")
    for note in result.notes:
        print(note)
    print(f"wrote {result.path} (max error {result.max_error:.2e} <= {args.tolerance:g}, "
          f"latency {metadata.latency} samples, {metadata.sample_rate or 'unknown'} Hz)")
    return 0
