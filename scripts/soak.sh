#!/usr/bin/env bash
# Soak: `stagewise launch` trains the default config on Fashion-MNIST for MINUTES (default 20)
# while this script samples every process's memory (launcher and workers) every INTERVAL
# seconds (default 15): resident memory now (VmRSS) and the most it has ever been (VmHWM).
# At the end it stops the run with SIGINT and checks: each process's peak memory grew less
# than 5 % after the first epoch, and no batch was lost: per epoch, the batches the scheduler
# fed equal those every stage trained, and the evaluation samples fed equal those every stage
# scored (metrics.jsonl's `accounting`), and no message was rejected. The peak is the measure because processes return freed
# memory to the kernel once an epoch, so resident memory rises and falls within each epoch;
# a leak shows as a peak that keeps rising. Not part of CI. Needs a release build and the
# data set. Usage: scripts/soak.sh [MINUTES] [OUT_DIR]
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
rss() { awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {print (r ? r : 0) "," (h ? h : 0)}' "/proc/$1/status" 2>/dev/null || echo 0,0; }
echo "seconds,epochs,process,pid,rss_kib,peak_kib" > "$out/memory.csv"
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
    samples = [r for r in rows if r["process"] == process and int(r["epochs"]) >= 1 and int(r["peak_kib"]) > 0]
    if len(samples) < 2:
        print(f"{process}: too few samples after the first epoch"); ok = False; continue
    first, last = int(samples[0]["peak_kib"]), int(samples[-1]["peak_kib"])
    growth = (last - first) / first * 100
    # A leak keeps growing; warm-up levels off: the second half's growth tells them apart.
    half = samples[len(samples) // 2:]
    late = (int(half[-1]["peak_kib"]) - int(half[0]["peak_kib"])) / int(half[0]["peak_kib"]) * 100
    resident = [int(r["rss_kib"]) / 1024 for r in samples]
    print(f"{process}: peak {first / 1024:.0f} MiB after epoch 1, {last / 1024:.0f} MiB at the end: {growth:+.1f} %; "
          f"second half {late:+.1f} %; resident {min(resident):.0f}–{max(resident):.0f} MiB")
    ok &= growth < 5
rejected = sum(manifest["rejected"].values()) + sum(sum((s.get("rejected") or {}).values()) for s in manifest["stages"])
print(f"rejected messages: {rejected}")
# Nothing lost, measured per epoch: batches fed = trained by every stage, eval samples fed =
# scored by every stage (the scheduler's counts in metrics.jsonl).
lost = 0
for line in open(f"{out}/run/metrics.jsonl"):
    report = json.loads(line)
    a = report.get("accounting")
    if a is None:
        print(f"epoch {report['epoch'] + 1}: no accounting"); lost += 1; continue
    equal = all(t == a["batchesFed"] for t in a["batchesTrained"]) and all(s == a["evalSamplesFed"] for s in a["evalSamplesScored"])
    if not equal or report["epoch"] < 2:
        print(f"epoch {report['epoch'] + 1}: batches fed {a['batchesFed']}, trained {a['batchesTrained']}; "
              f"eval samples fed {a['evalSamplesFed']}, scored {a['evalSamplesScored']}" + ("" if equal else "  <- LOST"))
    lost += 0 if equal else 1
print(f"epochs whose batches fed, trained and scored all agree: {epochs - lost} of {epochs}")
ok &= rejected == 0 and epochs >= 1 and lost == 0
print("soak: passed" if ok else "soak: FAILED")
sys.exit(0 if ok else 1)
PY
