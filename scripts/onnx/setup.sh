#!/usr/bin/env bash
# Installs the ONNX checkers into .venv-onnx/ (numpy, onnx, onnxruntime from PyPI): what the
# export test and `scripts/onnx/check.py` run an exported model with. Safe to run again (a
# second when they are there). Where pip cannot reach a package index it says so and exits 0:
# the export test then skips with that reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv-onnx/bin/python ] && .venv-onnx/bin/python -c 'import numpy, onnx, onnxruntime' 2>/dev/null; then
  exit 0
fi
if ! python3 -m venv .venv-onnx 2>/dev/null; then
  echo "onnx setup: python3 cannot make a virtual environment (install python3-venv); the ONNX export test will skip" >&2
  exit 0
fi
if ! .venv-onnx/bin/pip install -q --disable-pip-version-check numpy onnx onnxruntime; then
  echo "onnx setup: pip could not install numpy, onnx and onnxruntime (no package index?); the ONNX export test will skip" >&2
  exit 0
fi
.venv-onnx/bin/python -c 'import onnx, onnxruntime; print("onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__, "in .venv-onnx")'
