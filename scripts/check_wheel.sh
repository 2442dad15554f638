#!/usr/bin/env bash
# The package as a user gets it: build the wheel, install it into a fresh venv, and from a
# folder outside the checkout run both console scripts and a one-epoch digits run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
work=$(mktemp -d "${TMPDIR:-/tmp}/distillab-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m pip wheel -q --no-deps . -w "$work/dist"
wheel=$(ls "$work"/dist/distillab-*.whl)
configs=$("$PYTHON" -m zipfile -l "$wheel" | grep -c 'distillab/conf/.*\.yaml' || true)
[ "$configs" -gt 0 ] || { echo "check_wheel: $wheel holds no YAML configs" >&2; exit 1; }
echo "check_wheel: $(basename "$wheel") holds $configs YAML configs"

"$PYTHON" -m venv "$work/venv"
{ "$work/venv/bin/pip" install -q "$TORCH" && "$work/venv/bin/pip" install -q "$wheel"; } >"$work/pip.log" 2>&1 \
  || { grep -v '^WARNING: Location' "$work/pip.log" | tail -n 20 >&2; exit 1; }

mkdir "$work/elsewhere"
cd "$work/elsewhere"
"$work/venv/bin/distillab" --help >/dev/null
"$work/venv/bin/distillab-summarize" --help >/dev/null
"$work/venv/bin/distillab-export" --help >/dev/null
"$work/venv/bin/distillab" experiment=digits_kd teacher.max_epochs=1 trainer.max_epochs=1 logger=none \
  compression.report=false hydra.run.dir="$work/elsewhere/run" >"$work/run.log" 2>&1 \
  || { tail -n 30 "$work/run.log" >&2; exit 1; }
[ -s "$work/elsewhere/run/metrics.json" ] || { echo "check_wheel: the run wrote no metrics.json" >&2; exit 1; }
echo "check_wheel: installed wheel ran distillab --help, distillab-summarize --help, distillab-export --help and a one-epoch digits run from $PWD"
