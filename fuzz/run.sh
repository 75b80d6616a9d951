#!/usr/bin/env bash
# Run every atheris target for SECONDS each (default 60) and print one line per target:
# executions, coverage (libFuzzer "cov" edges), corpus size, crashes found.
#   fuzz/run.sh [SECONDS] [OUTDIR]
# Crashing inputs are kept in OUTDIR/<target>/crash-*; a run with a crash exits 1.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
out="${2:-$(mktemp -d /tmp/certctl-fuzz.XXXXXX)}"
py=.venv/bin/python
"$py" -c 'import atheris' 2>/dev/null || "$py" -m pip install -q -e '.[fuzz]'
"$py" fuzz/seeds.py "$out/seeds"
status=0
printf '%-15s %10s %8s %8s %8s %8s\n' target execs exec/s cov corpus crashes
for target in stepca-config localca-config keyfile csr ocsp serial reason responder; do
  mkdir -p "$out/$target/corpus"
  log="$out/$target/fuzz.log"
  (cd "$out/$target" && "$OLDPWD/$py" "$OLDPWD/fuzz/fuzz.py" "$target" \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
      corpus "$out/seeds/$target") >"$log" 2>&1
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  corpus=$(find "$out/$target/corpus" -type f | wc -l)
  crashes=$(find "$out/$target" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'oom-*' -o -maxdepth 1 -name 'timeout-*' | wc -l)
  [ "$crashes" -eq 0 ] || status=1
  printf '%-15s %10s %8s %8s %8s %8s\n' "$target" "${execs:-?}" "${speed:-?}" "${cov:-?}" "$corpus" "$crashes"
done
echo "logs and corpora: $out" >&2
exit $status
