#!/usr/bin/env bash
# Trains the reference setups on Fashion-MNIST with `stagewise train` and prints each run's
# final test accuracy (and accuracy by depth) as a Markdown table.
# Takes about 20–30 minutes on a 2-core machine. Needs a release build (scripts/run.sh makes
# one) and dataset-fashion-mnist. Usage: scripts/accuracy.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/accuracy}
bin=.build/release/stagewise
[ -x "$bin" ] || swift build -c release
mkdir -p "$out"
runs=(
  "mlp-e2e:config/mlp-e2e.yaml:"
  "mlp-greedy-k4:config/mlp-greedy-k4.yaml:"
  "cnn-e2e:config/cnn-e2e.yaml:"
)
for spec in "${runs[@]}"; do
  IFS=: read -r name config extra <<<"$spec"
  [ -f "$out/$name/stage-0.safetensors" ] && continue  # done in an earlier call
  echo "== $name ($config)" >&2
  rm -rf "${out:?}/$name"
  # shellcheck disable=SC2086
  "$bin" train --config "$config" --out "$out/$name" $extra | tee "$out/$name.log"
done
echo "| run | epochs | final test accuracy | accuracy by depth (stage 0…K−1) | seconds/epoch |"
echo "|---|---|---|---|---|"
for spec in "${runs[@]}"; do
  name=${spec%%:*}
  python3 - "$out/$name/metrics.jsonl" "$name" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
last = rows[-1]
depth = " / ".join(f"{a*100:.2f}" for a in last["test"]["stageAccuracy"])
secs = sum(r["seconds"] for r in rows) / len(rows)
print(f"| {sys.argv[2]} | {len(rows)} | {last['test']['accuracy']*100:.2f} % | {depth} | {secs:.1f} |")
PY
done
