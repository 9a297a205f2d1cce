#!/usr/bin/env bash
# The main job: installs what is missing (scripts/setup.sh), builds in release mode and trains
# the default config (model A, 4 stages, greedy local learning) on Fashion-MNIST, printing
# per-epoch loss and accuracy by depth. About 3–4 minutes on 2 cores (build included).
# Extra arguments go to `stagewise train` (e.g. --epochs 2, --config config/cnn-e2e.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release 2>&1 | grep -vE "prohibited flag|^warning: .*isystem" || true
[ -x .build/release/stagewise ] || { echo "run: the release build failed" >&2; exit 1; }
exec .build/release/stagewise train --config config/mlp-greedy-k4.yaml "$@"
