#!/usr/bin/env bash
# The test suite: installs what is missing (scripts/setup.sh), checks the style
# (scripts/lint.sh: swift-format's rules and 100 columns in Sources), runs every Swift test
# (`swift test`: numerics with gradient checks, data, config, trainer, ZeroMQ on loopback,
# the CLI and the daemon as real processes, three hosts in network namespaces, ONNX exports
# run by ONNX Runtime), then the real-Slurm test (scripts/slurm/test.sh: installs slurm-wlm
# and munge, starts a one-node Slurm, trains under sbatch, kills a stage, resumes twice,
# compares with an undisturbed run) and a short run of the wire fuzzers (scripts/fuzz.sh
# --quick). About 9 minutes on 2 cores from a clean checkout.
# Arguments go to `swift test` (and then skip the Slurm test and the fuzzers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/lint.sh  # .swift-format's rules and its 100 columns in Sources
bash scripts/onnx/setup.sh  # the ONNX export test's checkers (numpy, onnx, onnxruntime from PyPI)
swift test "$@"
if [ $# -eq 0 ]; then
  bash scripts/slurm/test.sh
  bash scripts/fuzz.sh --quick
fi
