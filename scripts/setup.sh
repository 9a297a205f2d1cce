#!/usr/bin/env bash
# Installs what Stagewise needs from Debian when it is missing: OpenBLAS (its OpenMP build), oneDNN, libzmq, zlib headers,
# pkg-config, the Fashion-MNIST IDX files, iproute2 (the multi-host test's namespaces), python3
# (the Slurm test reads JSON with it) and python3-venv (scripts/onnx/setup.sh makes the ONNX
# checkers' environment with it).
# Safe to run any number of times; a few seconds when everything is there, a minute or two on
# a fresh machine. Needs root (or sudo) for apt.
set -euo pipefail
packages=(libopenblas-dev libopenblas0-openmp libdnnl-dev libzmq3-dev zlib1g-dev pkg-config dataset-fashion-mnist iproute2 python3 python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: no swift on PATH (Swift 6 is needed)" >&2; exit 1; }
