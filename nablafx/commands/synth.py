"""``nablafx data synth``: render the built-in synthetic dataset (nothing to download)."""

from __future__ import annotations

import argparse
import sys
import time

from nablafx.data.synth.devices import DEVICES
from nablafx.data.synth.manifest import GENERATOR_VERSION
from nablafx.data.synth.render import (
    TEST_FRACTION,
    knob_grid,
    parse_knob_grid,
    render_dataset,
    setting_name,
)

NAME = "synth"
HELP = "render a synthetic dataset (virtual overdrive or compressor) in the ToneTwist layout"

SETTINGS_SHOWN = 6  # a long grid is summarised by its first and last settings

EXAMPLES = """\
examples:
  # one setting (all knobs at their defaults), 60 s trainval + 20 s test
  nablafx data synth --out data/synth

  # a drive sweep for a parametric (knob-conditioned) model
  nablafx data synth --out data/synth --knobs D=0,0.25,0.5,0.75,1 T=0.5

  # a compressor into the same folder: the dry files are shared
  nablafx data synth --out data/synth --device compressor --knobs T=0.2,0.5 R=0.3,0.8

The result reads like the ToneTwist AFx dataset:
  <out>/DRY/{trainval,test}/<name>.input.wav
  <out>/<Device>/{trainval,test}/<SETTING>/<SETTING>.<name>.target.wav
<SETTING> names every knob: letter + value x 100 in three digits (D060_T050_L050).
"""


def device_table() -> str:
    lines = ["devices and knobs (values in [0, 1]; default in brackets):"]
    for name, device in DEVICES.items():
        lines.append(f"  {name} -> {device.folder}/")
        lines += [
            f"    {letter}  {device.knob_names[letter]:<10} {device.knob_ranges[letter]} "
            f"[{device.defaults[letter]:g}]"
            for letter in device.knobs
        ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Synthesise dry guitar and bass signals (plucked notes, chords, palm mutes,\n"
        "sine sweeps and noise bursts at -30..-3 dBFS) and render them through a virtual\n"
        "device, once per knob setting. The same arguments give the same files, byte for byte."
    )
    parser.epilog = f"{device_table()}\n\n{EXAMPLES}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="dataset folder to create or add to (e.g. data/synth)",
    )
    parser.add_argument(
        "--device",
        choices=sorted(DEVICES),
        default="overdrive",
        help="virtual device to render (default: %(default)s)",
    )
    parser.add_argument(
        "--knobs",
        nargs="+",
        metavar="SPEC",
        default=[],
        help="knob values as LETTER=V1,V2,... (e.g. D=0.2,0.5,0.8 T=0.5); "
        "one setting per combination, defaults for knobs not given",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="trainval audio in seconds, split between guitar and bass (default: %(default)g)",
    )
    parser.add_argument(
        "--test-seconds",
        type=float,
        default=None,
        metavar="S",
        help=f"test audio in seconds (default: {TEST_FRACTION:.2g} x --seconds)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the dry material (default: %(default)s)",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=48000,
        metavar="HZ",
        help="sample rate in Hz (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        knobs = parse_knob_grid(args.knobs, args.device)
        settings = knob_grid(args.device, knobs)
        folder = render_dataset(
            args.out,
            device=args.device,
            knobs=knobs,
            seconds=args.seconds,
            test_seconds=args.test_seconds,
            seed=args.seed,
            sample_rate=args.sample_rate,
            progress=print,
        )
    except ValueError as error:  # bad knobs or durations, or a DRY folder made differently
        print(f"nablafx data synth: error: {error}", file=sys.stderr)
        return 2
    test_seconds = args.seconds * TEST_FRACTION if args.test_seconds is None else args.test_seconds
    names = [setting_name(setting) for setting in settings]
    shown = names if len(names) <= SETTINGS_SHOWN else [*names[:3], "...", *names[-2:]]
    elapsed = time.perf_counter() - started
    print(
        f"rendered {len(names)} setting(s) of {args.device} in {elapsed:.1f} s\n"
        f"  targets:  {folder}/{{trainval,test}}/<SETTING>/\n"
        f"  dry:      {folder.parent / 'DRY'}/{{trainval,test}}/ "
        f"({args.seconds:.4g} s trainval + {test_seconds:.4g} s test, seed {args.seed}, "
        f"{args.sample_rate} Hz, generator {GENERATOR_VERSION})\n"
        f"  settings: {', '.join(shown)}"
    )
    return 0
