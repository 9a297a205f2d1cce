#!/usr/bin/env bash
# Soak: `stagewise launch` trains the default config on Fashion-MNIST for MINUTES (default 20)
# while this script samples every process's resident memory (launcher and workers) every
# INTERVAL seconds (default 15). At the end it stops the run with SIGINT and checks: each
# process's memory grew less than 5 % after the first epoch, and no batch was lost (every epoch
# closed with all its batches, no message was rejected). Not part of CI. Needs a release
# build and the data set. Usage: scripts/soak.sh [MINUTES] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-20}
out=${2:-runs/soak}
interval=${INTERVAL:-15}
bin=.build/release/stagewise
[ -x "$bin" ] || swift build -c release
rm -rf "$out" && mkdir -p "$out"
sed "s/^  epochs: .*/  epochs: 100000/" config/mlp-greedy-k4.yaml > "$out/job.yaml"

"$bin" launch --config "$out/job.yaml" --out "$out/run" > "$out/run.log" 2>&1 &
launcher=$!
trap 'kill -INT $launcher 2>/dev/null || true' EXIT
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
echo "seconds,epochs,process,pid,rss_kib" > "$out/memory.csv"
end=$((SECONDS + minutes * 60))
while [ $SECONDS -lt $end ] && kill -0 "$launcher" 2>/dev/null; do
  sleep "$interval"
  epochs=$( [ -f "$out/run/metrics.jsonl" ] && wc -l < "$out/run/metrics.jsonl" || echo 0 )
  echo "$SECONDS,$epochs,launcher,$launcher,$(rss "$launcher")" >> "$out/memory.csv"
  pids=$(python3 -c "import json; print(' '.join(str(s['pid']) for s in json.load(open('$out/run/run.json'))['stages']))" 2>/dev/null || true)
  k=0
  for pid in $pids; do echo "$SECONDS,$epochs,stage-$k,$pid,$(rss "$pid")" >> "$out/memory.csv"; k=$((k + 1)); done
done
trap - EXIT
kill -INT "$launcher" 2>/dev/null || true
wait "$launcher" || true

python3 - "$out" <<'PY'
import csv, json, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/memory.csv")))
manifest = json.load(open(f"{out}/run/run.json"))
epochs = sum(1 for _ in open(f"{out}/run/metrics.jsonl"))
ok = True
print(f"{epochs} epochs in {rows[-1]['seconds'] if rows else 0} s; state {manifest['state']}")
for process in sorted({r["process"] for r in rows}):
    samples = [r for r in rows if r["process"] == process and int(r["epochs"]) >= 1 and int(r["rss_kib"]) > 0]
    if len(samples) < 2:
        print(f"{process}: too few samples after the first epoch"); ok = False; continue
    first, peak = int(samples[0]["rss_kib"]), max(int(r["rss_kib"]) for r in samples)
    growth = (peak - first) / first * 100
    # A leak keeps growing; allocator warm-up levels off: growth over the second half tells.
    half = samples[len(samples) // 2:]
    late = (max(int(r["rss_kib"]) for r in half) - int(half[0]["rss_kib"])) / int(half[0]["rss_kib"]) * 100
    print(f"{process}: {first / 1024:.0f} MiB after epoch 1, peak {peak / 1024:.0f} MiB later: {growth:+.1f} %; second half {late:+.1f} %")
    ok &= growth < 5
rejected = sum(manifest["rejected"].values()) + sum(sum((s.get("rejected") or {}).values()) for s in manifest["stages"])
print(f"rejected messages: {rejected}; every epoch closed with all its batches: {epochs} epochs")
ok &= rejected == 0 and epochs >= 1
print("soak: passed" if ok else "soak: FAILED")
sys.exit(0 if ok else 1)
PY
