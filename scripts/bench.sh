#!/usr/bin/env bash
# The benchmark suite: set-up (with wrk), then every benchmark in one run; prints the tables and
# writes bench-results/<UTC time>.json (and bench-results/latest.json).
# Extra arguments go to `python -m benchmarks` (e.g. --smoke, --only stepca).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh  # installs wrk too
mkdir -p bench-results
out="bench-results/$(date -u +%Y%m%dT%H%M%SZ).json"
.venv/bin/python -m benchmarks --out "$out" "$@"
cp "$out" bench-results/latest.json
