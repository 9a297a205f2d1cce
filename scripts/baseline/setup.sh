#!/usr/bin/env bash
# Installs the PyTorch CPU build into .venv-bench/ (the outside yardstick of `stagewise bench
# kernels` and `bench pipeline`); safe to run again. About 1 GB, a minute or two the first
# time, a second after. Not needed for training or the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv-bench/bin/python ] || python3 -m venv .venv-bench
if ! .venv-bench/bin/python -c 'import torch' 2>/dev/null; then
  # A plain `pip install torch` brings the CUDA stack; the +cpu build is what runs here.
  .venv-bench/bin/pip install -q 'torch==2.13.0+cpu' numpy
fi
.venv-bench/bin/python -c 'import torch; print("PyTorch", torch.__version__, "in .venv-bench")'
