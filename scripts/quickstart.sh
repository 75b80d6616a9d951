#!/usr/bin/env bash
# The main job: a real step-ca on loopback, then issue, verify (openssl), renew and revoke a
# certificate with the certctl command line. Sets everything up first; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
exec .venv/bin/python -m certctl_stepca.quickstart "$@"
