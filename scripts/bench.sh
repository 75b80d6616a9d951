#!/usr/bin/env bash
# The benchmark suite: set-up, wrk, then every benchmark in one run; prints the tables and
# writes bench-results/<UTC time>.json (and bench-results/latest.json).
# Extra arguments go to `python -m benchmarks` (e.g. --smoke, --only stepca).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk (Debian package) for the OCSP-over-HTTP benchmark" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null; }
fi
mkdir -p bench-results
out="bench-results/$(date -u +%Y%m%dT%H%M%SZ).json"
.venv/bin/python -m benchmarks --out "$out" "$@"
cp "$out" bench-results/latest.json
