#!/usr/bin/env bash
# Replicas join and leave a running job: model A cut in two (two 1024-wide layers a stage),
# 200 Fashion-MNIST batches an epoch, 5 epochs, stage 1 slowed 3× (daemon.slowStage/slowdown:
# injected waiting, so 2 cores suffice). `stagewise launch` starts one worker per stage; after
# epoch 1 a third `stagewise worker --scheduler URL` (no --stage) is started by hand and joins
# the stage with the least capacity at the next cut; after epoch 3 it is sent SIGTERM and
# leaves at the next cut. Epoch 1 runs at the one-worker rate, epoch 3 with stage 1 on two
# replicas, epoch 5 on one again; no batch is trained twice. About a minute on 2 cores.
# Usage: scripts/replica-join.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/replica-join}
bin=.build/release/stagewise
[ -x "$bin" ] || swift build -c release
rm -rf "${out:?}" && mkdir -p "$out"
cat >"$out/job.yaml" <<'YAML'
name: replica-join
seed: 1
method: greedy
schedule: pipelined
data: {source: fashion-mnist, path: /usr/share/datasets/fashion-mnist, trainLimit: 25600, testLimit: 2000}
training: {epochs: 5, batchSize: 128, threads: 1}
optimizer: {kind: sgd, learningRate: 0.05, momentum: 0.9}
learningRateSchedule: {kind: constant}
daemon: {slowStage: 1, slowdown: 3, checkpointEverySteps: 20}
stages:
  - layers: [{type: linear, out: 1024}, {type: relu}, {type: linear, in: 1024, out: 1024}, {type: relu}]
  - layers: [{type: linear, in: 1024, out: 1024}, {type: relu}, {type: linear, in: 1024, out: 1024}, {type: relu}]
YAML
"$bin" launch --config "$out/job.yaml" --out "$out/run" >"$out/launch.log" 2>&1 &
launch=$!
trap 'kill $launch 2>/dev/null || true' EXIT
deadline=$((SECONDS + 300))
epochs_done() {  # waits until the run has reported $1 epochs
  until [ -f "$out/run/metrics.jsonl" ] && [ "$(wc -l <"$out/run/metrics.jsonl")" -ge "$1" ]; do
    ((SECONDS < deadline)) || { echo "replica-join: too slow; see $out/launch.log" >&2; exit 1; }
    kill -0 $launch 2>/dev/null || { echo "replica-join: launch ended early; see $out/launch.log" >&2; exit 1; }
    sleep 0.2
  done
}
epochs_done 1
control=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['control'])" "$out/run/run.json")
"$bin" worker --scheduler "$control" >"$out/joiner.log" 2>&1 &
joiner=$!
epochs_done 3
kill -TERM $joiner
wait $joiner
wait $launch
grep -E "joins stage|leaves at|replicas per stage|continuing from|^epoch|final test" "$out/launch.log"
python3 - "$out/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
for r in rows:
    a = r["accounting"]
    print(f"epoch {r['epoch'] + 1}: {r['samplesPerSecond']:.0f} samples/s, "
          f"fed {a['batchesFed']} trained {a['batchesTrained']}")
PY
