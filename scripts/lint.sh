#!/usr/bin/env bash
# The style gate of the test command: `swift-format lint --strict` over Sources
# (.swift-format's rules), and its 100-column limit over Sources, which swift-format's formatter
# aims for but its linter does not report (long string literals and comments stay long).
set -euo pipefail
cd "$(dirname "$0")/.."
formatter=$(command -v swift-format || echo /opt/swift/usr/bin/swift-format)
if [ ! -x "$formatter" ] && ! command -v "$formatter" >/dev/null; then
  echo "lint: swift-format not found (it ships with the Swift toolchain)" >&2
  exit 1
fi
"$formatter" lint --strict --recursive --parallel Sources
python3 - <<'PY'
import pathlib, sys
long = [f"{p}:{i}: {len(l)} columns"
        for p in sorted(pathlib.Path("Sources").rglob("*.swift"))
        for i, l in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if len(l) > 100]
if long:
    print("lint: lines over .swift-format's 100 columns (run `swift-format format --in-place "
          "--recursive Sources` and split long strings):", *long, sep="\n  ", file=sys.stderr)
    sys.exit(1)
PY
echo "lint: Sources within 100 columns, swift-format lint clean"
