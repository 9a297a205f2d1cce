#!/usr/bin/env bash
# The real-Slurm test. Starts a single-node Slurm from Debian's packages in a temporary
# folder (scripts/slurm/local-slurm.sh), submits scripts/slurm/stagewise.sbatch with sbatch
# (a 2-stage job on Fashion-MNIST), kills one stage's worker with -9 after the first epoch,
# and checks that the stage came back as a new job step, that the job finished, and that it
# trained (test accuracy above 0.80). Then it resumes the finished run for two more epochs
# with STAGEWISE_RESUME, cancels that job after its first new epoch, resumes again, and checks
# that every epoch is in metrics.jsonl once and that the final weights equal, bit for bit, an
# undisturbed local run of all six epochs (constant learning rate, so extending is exact).
# Every daemon it started is stopped whatever happens. Bounded: about 4 minutes here; fails
# after 12. Needs root; prints why and exits 0 without.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
if [[ $(id -u) != 0 ]]; then echo "slurm test: skipped (needs root to run slurmd and munged)"; exit 0; fi
bin=${STAGEWISE:-$root/.build/debug/stagewise}
[[ -x $bin ]] || swift build --product stagewise 2>&1 | grep -vE "prohibited flag" || true
[[ -x $bin ]] || { echo "slurm test: no stagewise binary at $bin" >&2; exit 1; }

work=$(mktemp -d /tmp/stagewise-slurm.XXXXXX)
job=""
fail() { echo "slurm test: FAILED: $*" >&2; exit 1; }
cleanup() {
  status=$?
  if [[ -n $job ]] && squeue -h -j "$job" 2>/dev/null | grep -q .; then
    scancel --full "$job" 2>/dev/null || true
    for _ in $(seq 100); do squeue -h -j "$job" 2>/dev/null | grep -q . || break; sleep 0.2; done
  fi
  scripts/slurm/local-slurm.sh stop "$work/slurm"
  pkill -9 -f "^$bin (scheduler|worker)" 2>/dev/null || true
  if pgrep -f "$work/slurm" >/dev/null; then echo "slurm test: a daemon outlived stop" >&2; status=1; fi
  [[ $status == 0 ]] || { echo "--- job output"; cat "$work"/job.out 2>/dev/null | tail -n 40; echo "--- slurmctld.log"; tail -n 20 "$work/slurm/slurmctld.log" 2>/dev/null; } >&2
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

eval "$(scripts/slurm/local-slurm.sh start "$work/slurm")"

# CURVE on every socket: the scheduler's key pair, and one key for the job's workers.
"$bin" keygen --out "$work/scheduler" >/dev/null 2>&1
worker_key=$("$bin" keygen --out "$work/workers" 2>/dev/null)

# Two stages of model A at a quarter of its width: an epoch takes seconds even in a debug build.
cat > "$work/job.yaml" <<YAML
security: {curve: true, schedulerKey: "$work/scheduler.key", allowedWorkerKeys: ["$worker_key"]}
name: slurm-test
seed: 3
method: greedy
schedule: pipelined
training: {epochs: 4, batchSize: 128}
optimizer: {kind: sgd, learningRate: 0.05, momentum: 0.9}
learningRateSchedule: {kind: constant}
daemon: {heartbeatMilliseconds: 250, liveness: 8}
stages:
  - layers: [{type: linear, out: 256}, {type: relu}]
  - layers: [{type: linear, out: 256}, {type: relu}]
YAML

run=$work/run
job=$(STAGEWISE=$bin STAGEWISE_CONFIG=$work/job.yaml STAGEWISE_OUT=$run \
  STAGEWISE_KEY=$work/workers.key STAGEWISE_SCHEDULER_KEY=$work/scheduler.pub \
  sbatch --parsable --ntasks=3 --overcommit --output="$work/job.out" scripts/slurm/stagewise.sbatch)
echo "slurm test: submitted job $job"

json() { python3 -c "import json,sys; d=json.load(open('$run/run.json')); print($1)" 2>/dev/null; }
deadline=$((SECONDS + 720))
steps=""
watch_steps() { steps+=$(squeue -h -s -j "$job" -o "%i %j" 2>/dev/null | tr '\n' ';'); }

# After the first epoch: kill stage 1's worker (a task of step 0) with -9.
until [[ $(json "d['epochsCompleted']") -ge 1 ]] 2>/dev/null; do
  (( SECONDS < deadline )) || fail "no epoch finished within the bound"
  squeue -h -j "$job" | grep -q . || fail "the job ended before its first epoch"
  watch_steps
  sleep 0.5
done
victim=$(json "d['stages'][1]['pid']")
echo "slurm test: epoch 1 done; kill -9 stage 1's worker (pid $victim)"
kill -9 "$victim"

while squeue -h -j "$job" 2>/dev/null | grep -q .; do
  (( SECONDS < deadline )) || fail "the job did not finish within the bound"
  watch_steps
  sleep 0.5
done

grep -q "starting a worker for stage 1: srun --overlap" "$work/job.out" || fail "the scheduler never started a replacement"
[[ $steps == *"$job.1 stage-1"* ]] || fail "no replacement job step $job.1 (stage-1) seen; steps seen: $steps"
[[ $(json "d['state']") == finished ]] || fail "run.json state is $(json "d['state']")"
[[ $(json "len(d.get('recoveries') or [])") == 1 ]] || fail "run.json lists $(json "len(d.get('recoveries') or [])") recoveries, expected 1"
accuracy=$(python3 -c "import json; print(json.loads(open('$run/metrics.jsonl').read().splitlines()[-1])['test']['accuracy'])")
python3 -c "import sys; sys.exit(0 if $accuracy > 0.80 else 1)" || fail "final test accuracy $accuracy is not above 0.80"
grep -E "missed|waiting for a worker|starting a worker|slurm step|restarting from|final test accuracy" "$work/job.out" | sed 's/^/  /'
echo "slurm test: passed — job $job finished 4 epochs at test accuracy $accuracy; stage 1 came back as step $job.1"

# Resuming under Slurm: two more epochs, cancelled (scancel) after the first of them.
wait_gone() { while squeue -h -j "$job" 2>/dev/null | grep -q .; do (( SECONDS < deadline )) || fail "job $job did not end within the bound"; sleep 0.5; done; }
job=$(STAGEWISE=$bin STAGEWISE_RESUME=$run STAGEWISE_ARGS="--epochs 6" \
  STAGEWISE_KEY=$work/workers.key STAGEWISE_SCHEDULER_KEY=$work/scheduler.pub \
  sbatch --parsable --ntasks=3 --overcommit --output="$work/resume.out" scripts/slurm/stagewise.sbatch)
until [[ $(wc -l < "$run/metrics.jsonl") -ge 5 ]]; do
  (( SECONDS < deadline )) || fail "the resumed job trained no further epoch within the bound"
  squeue -h -j "$job" | grep -q . || fail "the resumed job ended before its first new epoch: $(tail -n 5 "$work/resume.out")"
  sleep 0.5
done
scancel "$job"
wait_gone
grep -q "resuming $run after epoch 4" "$work/resume.out" || fail "the resumed job did not continue after epoch 4: $(grep -m3 -E 'resum|rror' "$work/resume.out")"
job=$(STAGEWISE=$bin STAGEWISE_RESUME=$run \
  STAGEWISE_KEY=$work/workers.key STAGEWISE_SCHEDULER_KEY=$work/scheduler.pub \
  sbatch --parsable --ntasks=3 --overcommit --output="$work/resume2.out" scripts/slurm/stagewise.sbatch)
wait_gone
[[ $(json "d['state']") == finished ]] || fail "after the second resume run.json state is $(json "d['state']"): $(tail -n 5 "$work/resume2.out")"
epochs=$(python3 -c "import json; print([json.loads(l)['epoch'] for l in open('$run/metrics.jsonl')])")
[[ $epochs == "[0, 1, 2, 3, 4, 5]" ]] || fail "metrics.jsonl holds epochs $epochs after resuming, expected 0…5 once each"

# Stage replicas under Slurm: stage 1 on two workers, so four worker tasks; each rank finds
# its stage through STAGEWISE_SLOT_STAGES, and a job one task short is refused before it starts.
sed -e 's/epochs: 4/epochs: 1/' -e '$s/$/\n    replicas: 2/' "$work/job.yaml" > "$work/replicas.yaml"
submit_replicas() {
  STAGEWISE=$bin STAGEWISE_CONFIG=$work/replicas.yaml STAGEWISE_OUT=$work/replicas \
    STAGEWISE_KEY=$work/workers.key STAGEWISE_SCHEDULER_KEY=$work/scheduler.pub \
    sbatch --parsable --ntasks="$1" --overcommit --output="$work/$2" scripts/slurm/stagewise.sbatch
}
job=$(submit_replicas 3 short.out)
wait_gone
grep -q "the config has 3 worker slots (their stages: 0,1,1) but the job has 2 worker tasks; submit with --ntasks=4" "$work/short.out" \
  || fail "a job one task short of the replicas was not refused with the count: $(tail -n 3 "$work/short.out")"
job=$(submit_replicas 4 replicas.out)
wait_gone
run=$work/replicas
[[ $(json "d['state']") == finished ]] || fail "the replicated job's run.json state is $(json "d['state']"): $(tail -n 5 "$work/replicas.out")"
[[ $(json "sorted((s['stage'], s.get('replica')) for s in d['stages'])") == "[(0, None), (1, 0), (1, 1)]" ]] \
  || fail "the replicated job's workers are $(json "[(s['stage'], s.get('replica')) for s in d['stages']]")"
echo "slurm test: replicas passed — stage 1 ran on worker ranks 2 and 3 (STAGEWISE_SLOT_STAGES=0,1,1); a job one task short was refused"
run=$work/run

# The undisturbed reference: the same job, six epochs in one go, on loopback without Slurm.
sed -e '/^security:/d' -e 's/epochs: 4/epochs: 6/' "$work/job.yaml" > "$work/calm.yaml"
timeout 300 "$bin" launch --config "$work/calm.yaml" --out "$work/calm" > "$work/calm.log" 2>&1 \
  || fail "the undisturbed reference run failed: $(tail -n 5 "$work/calm.log")"
python3 - "$run" "$work/calm" <<'PY' || fail "the resumed run's final weights differ from the undisturbed run's"
import json, struct, sys
def tensors(path):
    blob = open(path, "rb").read()
    (size,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + size])
    return {name: blob[8 + size + t["data_offsets"][0]: 8 + size + t["data_offsets"][1]]
            for name, t in header.items() if name != "__metadata__"}
for stage in range(2):
    resumed, calm = (tensors(f"{d}/stage-{stage}.safetensors") for d in sys.argv[1:3])
    if resumed.keys() != calm.keys():
        sys.exit(f"stage {stage}: tensors {sorted(resumed)} against {sorted(calm)}")
    for name in resumed:
        if resumed[name] != calm[name]:
            sys.exit(f"stage {stage}: {name} differs")
PY
echo "slurm test: resume passed — continued for 2 more epochs, cancelled after one, resumed to the end: epochs $epochs; final weights equal the undisturbed run's, bit for bit"
