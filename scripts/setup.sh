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
# PostgreSQL server binaries: the tests start their own cluster (tests/postgres.py).
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
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

# The ACME tests' newer Pebble (ARI and profiles; Debian 12 ships 2.4): Debian unstable's
# package, fetched once with a private apt state (the system's apt sources are untouched)
# and unpacked into the cache. ~7 s and a ~10 MB index download, once per machine.
pebble_sid="${CERTCTL_CACHE_DIR:-$HOME/.cache/certctl}/pebble-sid"
if [ ! -x "$pebble_sid/root/usr/bin/pebble" ]; then
  say "fetching Pebble from Debian unstable into $pebble_sid (ACME tests: ARI, profiles)"
  mkdir -p "$pebble_sid/lists/partial" "$pebble_sid/cache/archives/partial"
  mirror="$(apt-get indextargets --format '$(REPO_URI)' 'Codename: bookworm' 'Created-By: Packages' 2>/dev/null | head -n1)"
  mirror="${mirror:-http://deb.debian.org/debian/}"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" \
    > "$pebble_sid/sources.list"
  apt_private=(-o "Dir::Etc::sourcelist=$pebble_sid/sources.list" -o Dir::Etc::sourceparts=-
               -o "Dir::State::Lists=$pebble_sid/lists" -o "Dir::Cache=$pebble_sid/cache"
               -o APT::Sandbox::User=root)
  apt-get -qq "${apt_private[@]}" update >/dev/null
  (cd "$pebble_sid" && apt-get -qq "${apt_private[@]}" download pebble >/dev/null)
  dpkg-deb -x "$(ls -t "$pebble_sid"/pebble_*.deb | head -n1)" "$pebble_sid/root"
  rm -rf "$pebble_sid/lists" "$pebble_sid/cache" "$pebble_sid"/pebble_*.deb
fi
