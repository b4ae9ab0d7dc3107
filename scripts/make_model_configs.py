"""Write the black-box model zoo configs under cfg/model/ (tcn, gcn, s4, rnn).

Names: ``<family>[-<cond>]-<size>[-k<knobs>].yaml`` where cond is f (FiLM), tf (TFiLM),
ttf (tiny TFiLM), tvf (time-varying FiLM); ``-k1`` marks a parametric model built for ONE
knob -- its ``num_knobs`` must equal the number of knobs in the data. Re-run after changing
the grid:  python scripts/make_model_configs.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "cfg" / "model"

# name: (blocks, kernel, dilation growth)  -- NablAFx model zoo, rf in samples at 48 kHz
CONV_SIZES = {
    "45-s": (5, 7, 4),
    "45-l": (10, 3, 2),
    "250-s": (6, 11, 4),
    "250-l": (11, 7, 2),
    "2500-s": (5, 13, 10),
    "2500-l": (10, 5, 3),
}
S4_SIZES = {"b4-s4-c16": (4, 4, 16), "b8-s32-c16": (8, 32, 16)}
CONDITIONING = {"f": "film", "tf": "tfilm", "ttf": "ttfilm", "tvf": "tvfilm"}
DESCRIPTION = {
    "none": "no conditioning",
    "film": "FiLM from the knobs (static in time)",
    "tfilm": "TFiLM (per-block LSTM on max-pooled features, causal)",
    "ttfilm": "tiny TFiLM (bottleneck 4, causal)",
    "tvfilm": "TVFiLM (one shared LSTM on the input level, causal)",
}
KNOB_NOTE = "# num_knobs must equal the number of knobs (device controls) in the data config.\n"


def variants():
    """(cond token, conditioning, num_knobs) of every conditioning variant."""
    yield "", "none", 0
    for token, method in CONDITIONING.items():
        if method != "film":
            yield token, method, 0
        yield token, method, 1


def yaml_value(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def write(path: Path, header: str, class_path: str, init_args: dict, module_args: dict) -> None:
    lines = [header.rstrip() + "\n", "model:\n", "  net:\n", f"    class_path: {class_path}\n", "    init_args:\n"]
    lines += [f"      {k}: {yaml_value(v)}\n" for k, v in init_args.items()]
    lines += [f"  {k}: {yaml_value(v)}\n" for k, v in module_args.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


def name(family: str, token: str, size: str, knobs: int) -> str:
    return "-".join(p for p in (family, token, size) if p) + (f"-k{knobs}" if knobs else "")


def main() -> None:
    for family, cls in (("tcn", "TCN"), ("gcn", "GCN")):
        for size, (blocks, kernel, growth) in CONV_SIZES.items():
            rf = 1 + sum((kernel - 1) * growth**n for n in range(blocks))
            for token, method, knobs in variants():
                stem = name(family, token, f"{size}-16", knobs)
                header = (
                    f"# {stem.upper()}: {cls}, {blocks} blocks, kernel {kernel}, dilation growth {growth}, "
                    f"16 channels;\n# conv receptive field {rf} samples ({1000 * rf / 48000:.1f} ms at 48 kHz); "
                    f"{DESCRIPTION[method]}.\n" + (KNOB_NOTE if knobs else "")
                )
                args = dict(num_knobs=knobs, channels=16, num_blocks=blocks, kernel_size=kernel, dilation_growth=growth)
                if method != "none":
                    args.update(conditioning=method, control_block_size=128)
                write(ROOT / family / f"{stem}.yaml", header, f"nablafx.models.{cls}", args, {"lr": 0.005})
    for size, (blocks, state, channels) in S4_SIZES.items():
        for token, method, knobs in variants():
            stem = name("s4", token, size, knobs)
            header = (
                f"# {stem.upper()}: S4 (diagonal SSM), {blocks} blocks, state size {state}, {channels} channels;\n"
                f"# {DESCRIPTION[method]}. dt and A learn at ssm_lr without weight decay.\n"
                + (KNOB_NOTE if knobs else "")
            )
            args = dict(num_knobs=knobs, channels=channels, num_blocks=blocks, state_size=state)
            if method != "none":
                args.update(conditioning=method, control_block_size=128)
            args["ssm_lr"] = 0.001
            write(ROOT / "s4" / f"{stem}.yaml", header, "nablafx.models.S4", args, {"lr": 0.01})
    rnn_variants = [("", "none", 0), ("", "knobs", 1), ("tvc", "tvc", 0), ("tvc", "tvc", 1)]
    for cell, sizes in (("lstm", (32, 96)), ("gru", (32,))):
        for hidden in sizes:
            for token, method, knobs in rnn_variants:
                stem = name(cell, token, str(hidden), knobs)
                how = {
                    "none": "audio only",
                    "knobs": "knob values appended to every input sample",
                    "tvc": "a 16-dim time-varying conditioning sequence (block-rate LSTM on the input level"
                    + (" + knobs" if knobs else "") + ") appended to the input",
                }[method]
                header = (
                    f"# {stem.upper()}: one-layer {cell.upper()}, hidden {hidden}; {how}.\n"
                    "# Truncated BPTT: 100 ms chunks (4800 samples at 48 kHz), state carried and detached.\n"
                    + (KNOB_NOTE if knobs else "")
                )
                args = dict(num_knobs=knobs, hidden_size=hidden, cell=cell, residual=False, output_tanh=True)
                if method != "none":
                    args["conditioning"] = method
                if method == "tvc":
                    args.update(control_block_size=128, control_size=16)
                write(ROOT / "rnn" / f"{stem}.yaml", header, "nablafx.models.RNN", args, {"lr": 0.001, "tbptt_chunk": 4800})


if __name__ == "__main__":
    main()
