#!/usr/bin/env bash
# Regenerate constraints.txt: resolve pyproject.toml's dependencies (all extras) afresh in a
# throw-away virtual environment and freeze the result. Run from the repository root with the
# Python the project is tested on, then run the README's two commands before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
env=$(mktemp -d)
trap 'rm -rf "$env"' EXIT
python3 -m venv "$env"
"$env/bin/pip" install --quiet --upgrade pip
"$env/bin/pip" install --quiet -e ".[dev]"
"$env/bin/nablafx" doctor --quiet
{
  sed -n '/^#/p' constraints.txt
  "$env/bin/pip" freeze --exclude-editable | grep -v '^nablafx'
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pinned packages"
