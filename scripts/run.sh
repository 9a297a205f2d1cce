#!/usr/bin/env bash
# The main job: installs what is missing (scripts/setup.sh), builds in release mode and
# launches a local cluster — a scheduler and one worker process per stage — that trains the
# default config (model A, 4 stages, greedy local learning, pipelined) on Fashion-MNIST,
# printing per-epoch loss and accuracy by depth. About 4–5 minutes on 2 cores (build included).
# Extra arguments go to `stagewise launch` (e.g. --epochs 2, --config config/smoke.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release 2>&1 | grep -vE "prohibited flag|^warning: .*isystem" || true
[ -x .build/release/stagewise ] || { echo "run: the release build failed" >&2; exit 1; }
exec .build/release/stagewise launch --config config/mlp-greedy-k4.yaml "$@"
