#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages, the venv, the project.
# Sourced by scripts/quickstart.sh, scripts/test.sh and scripts/bench.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*" >&2; }

need_apt=()
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
dpkg-query -W -f='${Status}' golang-github-smallstep-certificates-dev 2>/dev/null \
  | grep -q "install ok installed" || need_apt+=(golang-github-smallstep-certificates-dev)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)  # the OCSP-over-HTTP benchmark and its CI smoke
command -v pebble >/dev/null 2>&1 || need_apt+=(pebble)  # the ACME connector's tests (+ pebble-challtestsrv)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_apt[*]} (about a minute)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.certctl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
   || { [ -d examples ] && [ -n "$(find examples -name pyproject.toml -newer "$stamp" 2>/dev/null)" ]; }; then
  say "installing certctl-connectors and test tools into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  for example in examples/*/; do
    [ -f "$example/pyproject.toml" ] || continue
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "$example"
  done
  touch "$stamp"
fi
