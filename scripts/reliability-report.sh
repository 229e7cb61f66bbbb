#!/usr/bin/env bash
# The reliability report: runs every test binary that records report rows (tests/*.rs calling
# report::record: the fault_* tests, load, corpus, fuzz_*, the security tests), each against the
# real test environment, then prints their rows as one Markdown table with totals. A row is
# written only after its scenario's assertions passed; a binary that fails is listed as lost.
# Exits non-zero when any binary failed.
#
#   scripts/reliability-report.sh            all of them
#   scripts/reliability-report.sh fault_neo4j load   only these binaries
#
# Uses the running test environment, or starts one (and stops it at the end) like scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/use-testenv.sh
source scripts/use-testenv.sh

DBCONN_REPORT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dbconn-report.XXXXXX")
export DBCONN_REPORT_DIR

if (($# > 0)); then
  binaries=("$@")
else
  mapfile -t binaries < <(grep -l 'report::record' tests/*.rs | xargs -n1 basename | sed 's/\.rs$//' | sort)
fi

cargo build --locked --quiet --tests --bins
declare -A result seconds
failed=()
for bin in "${binaries[@]}"; do
  log=$DBCONN_REPORT_DIR/$bin.log
  start=$(date +%s)
  echo "[report] cargo test --test $bin (log: $log)" >&2
  if cargo test --locked --quiet --test "$bin" >"$log" 2>&1; then
    result[$bin]=passed
  else
    result[$bin]=FAILED
    failed+=("$bin")
  fi
  seconds[$bin]=$(($(date +%s) - start))
done

cell() { sed 's/|/\\|/g'; }
rows() { cat "$DBCONN_REPORT_DIR"/*.tsv 2>/dev/null || true; }
count() { rows | awk -F'\t' -v kinds="$1" 'BEGIN { n = split(kinds, k, ","); for (i = 1; i <= n; i++) want[k[i]] = 1 } ($1 in want) { c++ } END { print c + 0 }'; }

echo "# Reliability report"
echo
echo "| kind | scenario | outcome | detail |"
echo "| --- | --- | --- | --- |"
for kind in fault load bad-input fuzz security; do
  rows | awk -F'\t' -v k="$kind" '$1 == k'
done | cell | awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
rows | awk -F'\t' '$1 !~ /^(fault|load|bad-input|fuzz|security)$/' | cell |
  awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
echo
echo "| test binary | result | seconds |"
echo "| --- | --- | --- |"
for bin in "${binaries[@]}"; do
  echo "| $bin | ${result[$bin]} | ${seconds[$bin]} |"
done
echo
echo "- scenarios run: $(rows | wc -l)"
echo "- faults survived: $(count fault)"
echo "- load scenarios passed: $(count load)"
echo "- bad inputs tried: $(count bad-input,fuzz) (corpus and fuzz rows)"
echo "- security checks passed: $(count security)"
if ((${#failed[@]} == 0)); then
  echo "- lost: 0 (every test binary passed)"
else
  echo "- lost: ${#failed[@]} test binaries failed: ${failed[*]} (logs in $DBCONN_REPORT_DIR)"
  exit 1
fi
