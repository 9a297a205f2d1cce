#!/usr/bin/env bash
# The default job against PyTorch, side by side: `stagewise launch` on the default config
# (model A, greedy, K = 4 worker processes, pipelined, 1 thread each) for EPOCHS epochs on
# Fashion-MNIST, then PyTorch (scripts/baseline/setup.sh) training the same model greedily in
# one process with as many threads as this machine has cores, and the ratio of the two.
# About a minute on 2 cores. Needs the release build (bash scripts/run.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${1:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
.build/release/stagewise launch --epochs "$epochs" --out "$out/run" 2>&1 | grep -E '^CPU|^epoch' | tee "$out/launch.txt"
ours=$(grep -oE '[0-9]+ samples/s' "$out/launch.txt" | awk '{print $1}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
cores=$(nproc)
python=.venv-bench/bin/python; [ -x "$python" ] || python=python3
theirs=$("$python" scripts/baseline/torch_baseline.py --model a-greedy --threads "$cores" --stages 4 2>/dev/null \
  | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["samplesPerSecond"]))') || {
  echo "PyTorch not importable: run scripts/baseline/setup.sh"; exit 0; }
echo "stagewise launch (median epoch): $ours samples/s; PyTorch greedy, $cores threads: $theirs samples/s; ratio $(python3 -c "print(f'{$ours/$theirs:.2f}')")"
