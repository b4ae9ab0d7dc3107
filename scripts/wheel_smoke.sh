#!/usr/bin/env bash
# Every nablafx command from a wheel (non-editable) install, run outside the repository so
# nothing is imported from the source tree. Usage: scripts/wheel_smoke.sh REPO_ROOT
# (.ci/run calls it after installing the wheel; the configs come from REPO_ROOT/cfg).
set -euo pipefail
repo=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
python - <<'PY'
import nablafx, pathlib
where = pathlib.Path(nablafx.__file__).parent
assert "site-packages" in str(where), f"nablafx imported from {where}, not from the installed wheel"
assert (where / "weights" / "siren_mlp_tanh.pt").is_file(), "pretrained weights missing from the wheel"
print(f"nablafx {nablafx.__version__} from {where}")
PY
nablafx --help >/dev/null
nablafx doctor --quiet
nablafx data synth --out data --seconds 10 --test-seconds 2 --seed 0
nablafx data check data --device Synth-Overdrive >/dev/null
# a gray-box chain whose MLP starts from the packaged pretrained weights
nablafx fit --data.root data --data.device Synth-Overdrive --data.segment_seconds 0.25 \
  --data.batch_size 2 --model.net nablafx.models.GrayBoxChain \
  --model.net.init_args.spec "peq.s+g.s+mlp+g.s" --trainer.max_steps 2 \
  --trainer.accelerator cpu --trainer.logger false --trainer.enable_progress_bar false \
  --trainer.default_root_dir runs
ckpt=$(find runs -name last.ckpt | head -n 1)
nablafx test --data.root data --data.device Synth-Overdrive --data.test_segment_seconds 1 \
  --trainer.logger false --trainer.enable_progress_bar false --ckpt_path "$ckpt" >/dev/null
dry=$(find data/DRY/test -name '*.input.wav' | head -n 1)
nablafx process "$ckpt" "$dry" out.wav --block-size 64
nablafx export "$ckpt" --format torchscript --out model.pt
nablafx bench --quick "$repo/cfg/model/tcn/tcn-45-s-16.yaml" >/dev/null
nablafx bench --exported model.pt --block-sizes 256 --quick >/dev/null
nablafx pretrain nonlinearity --out mlp.pt --steps 5 >/dev/null
echo "wheel install: every command ran"
