#!/usr/bin/env bash
# Wire fuzzing at volume, in two parts.
#  1. libFuzzer on the decoder: Sources/Wire with Fuzz/WireDecoderTarget.swift, built with
#     `swiftc -sanitize=fuzzer,address`, coverage-guided from a seed corpus of well-formed
#     messages of every kind (the target writes it). Decoding must never trap, what decodes must
#     re-encode to the same message, and every refusal must have a reason.
#  2. A live stage: `stagewise-fuzz` starts a real run (three worker processes), sends
#     malformed messages to both data sockets of its middle stage (activations from stage 0;
#     gradients from stage 2 under e2e, errors under DFA, synthesiser targets under cDNI), waits
#     until the stage has counted every one by the decoder's reason, then stops the run and
#     checks it trained on and ended cleanly — once per method.
# Usage: scripts/fuzz.sh [--quick] [--runs N] [--frames N]
#   default: 1,000,000 decoder inputs and 1,000,000 messages into the live stage (release build);
#   --quick (what `.ci/run` runs): 100,000 inputs and 50,000 messages with the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=1000000 frames=1000000 configuration=release
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) runs=100000 frames=50000 configuration=debug ;;
    --runs) runs=$2; shift ;;
    --frames) frames=$2; shift ;;
    *) echo "fuzz.sh: unknown argument $1 (use --quick, --runs N, --frames N)" >&2; exit 2 ;;
  esac
  shift
done

swift build -c "$configuration" --product stagewise
swift build -c "$configuration" --product stagewise-fuzz
bin=$(swift build -c "$configuration" --show-bin-path)

echo "== 1. libFuzzer on the wire decoder: $runs inputs"
mkdir -p .build/fuzz
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name WireFuzz \
  Sources/Wire/*.swift Fuzz/WireDecoderTarget.swift -o .build/fuzz/wire-decoder 2>&1 \
  | { grep -v "Cannot export local symbol" || true; }
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus/seeds" "$corpus/found"
# Crash reproducers land in .build/fuzz (-artifact_prefix); the run fails on the first one.
STAGEWISE_FUZZ_SEEDS="$corpus/seeds" .build/fuzz/wire-decoder -runs="$runs" -seed=1 -max_len=4096 \
  -artifact_prefix=.build/fuzz/ -print_final_stats=1 "$corpus/found" "$corpus/seeds" > .build/fuzz/decoder.log 2>&1 \
  || { tail -40 .build/fuzz/decoder.log; echo "fuzz.sh: the decoder failed (log: .build/fuzz/decoder.log)" >&2; exit 1; }
grep -E "^Done|number_of_executed_units|average_exec_per_sec|new_units_added" .build/fuzz/decoder.log
grep -oE "cov: [0-9]+ ft: [0-9]+" .build/fuzz/decoder.log | tail -1

for method in e2e dfa cdni; do
  echo "== 2. $frames malformed messages into a live $method stage's data and gradient sockets"
  "$bin/stagewise-fuzz" --method "$method" --frames "$frames" --stagewise "$bin/stagewise"
done
