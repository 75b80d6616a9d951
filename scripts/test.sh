#!/usr/bin/env bash
# The whole test suite: set-up, ruff, mypy --strict, pytest (real step-ca included).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "==> ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy --strict" >&2
.venv/bin/mypy
echo "==> pytest" >&2
.venv/bin/pytest "$@"
