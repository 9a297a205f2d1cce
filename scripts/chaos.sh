#!/usr/bin/env bash
# Chaos run on Fashion-MNIST: `stagewise launch` trains model A (4 worker processes) for
# EPOCHS − 1 epochs while this script kills a random worker with SIGKILL $KILLS times (default
# 3), then kills the launcher itself once, flips a byte in the newest epoch checkpoint of one
# stage, and extends the run with `stagewise launch --resume RUN --epochs EPOCHS` (constant
# learning rate, so the extension is exact). Then it checks that the resume skipped the damaged
# cut, that the run completed, that its final accuracy is within 1 point of an undisturbed
# one-process run of EPOCHS epochs (for local learning it is the same, bit for bit), and that
# every checkpoint on disk loads; it prints each recovery from run.json (stage, detection,
# recovery time, batches retrained). About 4–6 minutes on 2 cores. Needs a release build and
# the data set. With REPLICAS=1 it then runs a replica phase: the same job with stage 1 on two
# replicas (checkpoints every 50 steps), undisturbed and then with one replica killed (SIGKILL)
# after the first epoch and a new `stagewise worker --stage 1` started to join it back; the
# run must finish with one recovery that rolled nothing back, within 1 point of the undisturbed replicated run, every
# checkpoint loading (about 5 more minutes).
# Usage: [REPLICAS=1] scripts/chaos.sh [OUT_DIR] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/chaos}
epochs=${2:-5}
kills=${KILLS:-3}
bin=.build/release/stagewise
[ -x "$bin" ] || swift build -c release
rm -rf "$out" && mkdir -p "$out"
sed -e "s/^  epochs: .*/  epochs: $epochs/" -e "s/^  kind: cosine/  kind: constant/" config/mlp-greedy-k4.yaml > "$out/job.yaml"

field() {  # field RUN_DIR PYTHON_EXPRESSION_ON_run.json
  python3 -c "import json,sys; m=json.load(open(sys.argv[1]+'/run.json')); print($2)" "$1" 2>/dev/null || true
}

echo "== undisturbed reference: stagewise train" >&2
"$bin" train --config "$out/job.yaml" --out "$out/calm" > "$out/calm.log"

echo "== chaos: stagewise launch, $kills worker kills, then the launcher" >&2
"$bin" launch --config "$out/job.yaml" --epochs $((epochs - 1)) --out "$out/run" > "$out/run.log" 2>&1 &
launcher=$!
for i in $(seq 1 "$kills"); do
  sleep $((6 + RANDOM % 8))
  stage=$((RANDOM % 4))
  pid=$(field "$out/run" "m['stages'][$stage]['pid']")
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && echo "killed stage $stage (pid $pid)" >&2
done
sleep $((6 + RANDOM % 6))
# The damaged cut below must have an older one to fall back to: two epochs reported first.
until [ "$(wc -l < "$out/run/metrics.jsonl" 2>/dev/null || echo 0)" -ge 2 ]; do
  kill -0 "$launcher" 2>/dev/null || break
  sleep 0.5
done
if kill -9 "$launcher" 2>/dev/null; then
  echo "killed the launcher (pid $launcher)" >&2
  wait "$launcher" 2>/dev/null || true
  # Its workers notice the silence and leave by themselves (within liveness × heartbeat);
  # wait for them, so they write nothing more into run.log.
  for pid in $(field "$out/run" "' '.join(str(s['pid']) for s in m['stages'])"); do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  done
else
  wait "$launcher"
fi
damaged=$(python3 - "$out/run" <<'PY'
import glob, re, sys, random
# A file of the newest cut every stage saved: the one --resume would pick.
epochs = [{int(re.search(r"epoch-(\d+)", f).group(1)) for f in glob.glob(f"{sys.argv[1]}/stage-{k}.epoch-*.safetensors")} for k in range(4)]
newest = max(set.intersection(*epochs))
victim = f"{sys.argv[1]}/stage-{random.randrange(4)}.epoch-{newest}.safetensors"
data = bytearray(open(victim, "rb").read())
data[-1] ^= 0x01  # one bit of the last float
open(victim, "wb").write(data)
print(victim)
PY
)
echo "flipped a bit in $damaged; extending the run to $epochs epochs with --resume" >&2
"$bin" launch --resume "$out/run" --epochs "$epochs" >> "$out/run.log" 2>&1

echo "== checks" >&2
grep -q "skipped a damaged checkpoint: $damaged" "$out/run.log" || { echo "FAIL: the resume did not skip $damaged" >&2; exit 1; }
calm=$(tail -1 "$out/calm/metrics.jsonl" | python3 -c "import json,sys; print(json.load(sys.stdin)['test']['accuracy'])")
chaos=$(tail -1 "$out/run/metrics.jsonl" | python3 -c "import json,sys; print(json.load(sys.stdin)['test']['accuracy'])")
lines=$(wc -l < "$out/run/metrics.jsonl")
state=$(field "$out/run" "m['state']")
for f in "$out"/run/*.safetensors; do "$bin" inspect "$f" > /dev/null || { echo "FAIL: $f does not load" >&2; exit 1; }; done
echo "state $state, $lines/$epochs epochs; final accuracy $chaos (undisturbed $calm); every checkpoint loads"
python3 - "$out/run/run.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for r in m.get("recoveries") or []:
    took = r.get("recoverySeconds")  # unset when the launcher itself died before training resumed
    print(f"recovery: stage {r['stage']} ({r['reason']}), silent {r['detectedAfterSeconds']:.2f} s, "
          f"recovered in {'n/a' if took is None else f'{took:.1f} s'}, resumed after epoch {r['resumedAfterEpoch']}, "
          f"{r['batchesRetrained']} batches retrained ({r['batchesInFlight']} in flight)")
PY
python3 -c "import sys; c,d=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(c-d) <= 0.01 else 1)" "$calm" "$chaos" \
  || { echo "FAIL: accuracy differs by more than 1 point" >&2; exit 1; }
[ "$state" = finished ] && [ "$lines" -eq "$epochs" ] || { echo "FAIL: the run did not complete" >&2; exit 1; }
echo "chaos: passed"
[ "${REPLICAS:-0}" = 1 ] || exit 0

echo "== replicas: stage 1 on two workers, undisturbed" >&2
cp "$out/job.yaml" "$out/replicas.yaml"
printf 'daemon: {checkpointEverySteps: 50}\n' >> "$out/replicas.yaml"
"$bin" launch --config "$out/replicas.yaml" --replicas 1=2 --out "$out/replicas-calm" > "$out/replicas-calm.log" 2>&1
echo "== replicas: kill one of stage 1's replicas after epoch 1, start a worker that joins" >&2
"$bin" launch --config "$out/replicas.yaml" --replicas 1=2 --out "$out/replicas" > "$out/replicas.log" 2>&1 &
launcher=$!
until [ "$(wc -l < "$out/replicas/metrics.jsonl" 2>/dev/null || echo 0)" -ge 1 ]; do
  kill -0 "$launcher" 2>/dev/null || { echo "FAIL: the replicated run ended early" >&2; exit 1; }
  sleep 0.5
done
sleep 2  # mid-epoch
victim=$(field "$out/replicas" "[s['pid'] for s in m['stages'] if s['stage'] == 1 and s.get('replica') == 1][0]")
kill -9 "$victim" && echo "killed stage 1 replica 1 (pid $victim)" >&2
until [ "$(field "$out/replicas" "len(m.get('recoveries') or [])")" = 1 ] && [ "$(field "$out/replicas" "m['state']")" = running ]; do sleep 0.2; done
control=$(field "$out/replicas" "m['control']")
"$bin" worker --scheduler "$control" --stage 1 > "$out/replicas-joiner.log" 2>&1 &
joiner=$!
wait "$launcher"
wait "$joiner" || { echo "FAIL: the joiner failed: $(tail -n 3 "$out/replicas-joiner.log")" >&2; exit 1; }
calm=$(tail -1 "$out/replicas-calm/metrics.jsonl" | python3 -c "import json,sys; print(json.load(sys.stdin)['test']['accuracy'])")
chaos=$(tail -1 "$out/replicas/metrics.jsonl" | python3 -c "import json,sys; print(json.load(sys.stdin)['test']['accuracy'])")
for f in "$out"/replicas/*.safetensors; do "$bin" inspect "$f" > /dev/null || { echo "FAIL: $f does not load" >&2; exit 1; }; done
grep -E "goes on with|joins stage|continuing from|restarting from|had handed on|died:" "$out/replicas.log" | sed 's/^/  /'
python3 - "$out/replicas" <<'PY' || exit 1
import json, sys
m = json.load(open(sys.argv[1] + "/run.json"))
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if l.strip()]
bad = [r["epoch"] for r in rows if len(set(r["accounting"]["batchesTrained"] + [r["accounting"]["batchesFed"]])) != 1]
(r,) = m["recoveries"]
print(f"replicas: state {m['state']}, workers {sorted((s['stage'], s.get('replica')) for s in m['stages'])}, "
      f"recovery of stage {r['stage']}: {r['batchesRetrained']} batches retrained, "
      f"rolled back: {r.get('rolledBack', True)}")
if r.get("rolledBack", True) or r["batchesRetrained"] != 0:
    sys.exit("FAIL: the lost replica rolled the job back")
sys.exit(f"FAIL: accounting off in epochs {bad}" if bad else 0)
PY
echo "replicas: final accuracy $chaos (undisturbed replicated $calm)"
python3 -c "import sys; c,d=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(c-d) <= 0.01 else 1)" "$calm" "$chaos" \
  || { echo "FAIL: the replicated run's accuracy differs by more than 1 point" >&2; exit 1; }
echo "chaos replicas: passed"
