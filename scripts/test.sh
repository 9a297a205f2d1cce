#!/usr/bin/env bash
# The test suite: installs what is missing (scripts/setup.sh), then runs every test
# (`swift test`: numerics with gradient checks, data, config, trainer, ZeroMQ on loopback,
# the CLI as a real process). About 3–4 minutes on 2 cores from a clean checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec swift test "$@"
