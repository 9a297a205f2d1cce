#!/usr/bin/env bash
# Model A greedy at K = 4 on Fashion-MNIST with `stagewise launch`: every stage on one worker,
# then every stage on two replicas at replicas.averageEvery 1 and 16; 3 epochs per run, seeds
# 1, 2, 3 (override with SEEDS="1 2"). Prints a Markdown table of final test accuracy (mean ± sd)
# and samples/s. Replicas route by measured throughput, so their runs are not bit-for-bit
# repeatable; the one-worker rows are. About 2 minutes a run on 2 cores.
# Usage: scripts/replica-accuracy.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/replica-accuracy}
bin=.build/release/stagewise
[ -x "$bin" ] || swift build -c release
mkdir -p "$out"
seeds=${SEEDS:-1 2 3}
variants=("one:1:16" "x2-avg1:2:1" "x2-avg16:2:16")
for seed in $seeds; do
  for spec in "${variants[@]}"; do
    IFS=: read -r name replicas every <<<"$spec"
    run="$out/$name-seed$seed"
    [ -f "$run/metrics.jsonl" ] && [ "$(wc -l <"$run/metrics.jsonl")" -ge 3 ] && continue
    rm -rf "${run:?}"
    config="$out/$name-seed$seed.yaml"
    sed -e "s/^seed: 1/seed: $seed/" -e "s/^  epochs: 10/  epochs: 3/" \
      config/mlp-greedy-k4.yaml >"$config"
    printf 'replicas: {averageEvery: %s}\n' "$every" >>"$config"
    echo "== $name seed $seed" >&2
    all="0=$replicas,1=$replicas,2=$replicas,3=$replicas"
    "$bin" launch --config "$config" --out "$run" --replicas "$all" \
      >"$run.log" 2>&1 || { echo "$name seed $seed failed: see $run.log" >&2; exit 1; }
  done
done
python3 - "$out" "$seeds" <<'PY'
import json, statistics, sys, os
out, seeds = sys.argv[1], sys.argv[2].split()
labels = {"one": "one worker per stage", "x2-avg1": "every stage ×2, averageEvery 1",
          "x2-avg16": "every stage ×2, averageEvery 16"}
print("| model A greedy K = 4, 3 epochs | test accuracy, mean ± sd | per seed | samples/s |")
print("|---|---|---|---|")
for name, label in labels.items():
    accs, rates = [], []
    for s in seeds:
        rows = [json.loads(l) for l in open(os.path.join(out, f"{name}-seed{s}", "metrics.jsonl"))
                if l.strip()]
        accs.append(rows[-1]["test"]["accuracy"] * 100)
        rates.append(statistics.mean(r["samplesPerSecond"] for r in rows))
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    per = " / ".join(f"{a:.2f}" for a in accs)
    print(f"| {label} | {statistics.mean(accs):.2f} ± {sd:.2f} % | {per} | "
          f"{statistics.mean(rates):.0f} |")
PY
