#!/usr/bin/env bash
# The main job: a real step-ca on loopback; issue, verify, revoke a certificate through it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m certctl_stepca.demo "$@"
