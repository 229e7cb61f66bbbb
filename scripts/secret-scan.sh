#!/usr/bin/env bash
# Searches what the operator published during a test run for the test passwords: the log and the
# last /metrics scrape of every operator the tests started (tests/common writes them to
# $TMPDIR/dbconn-e2e-logs), and every Event and every DatabaseConnection (status) in all
# namespaces. Secrets are not searched: a binding Secret carries the password on purpose.
#
# The passwords: the test environment's (every *_PASSWORD and *_TOKEN that `testenv.sh env`
# prints) and every one a test put in a Secret (tests/common's secret_yaml
# records them in dbconn-e2e-logs/passwords.txt).
#
# Run by scripts/test.sh after `cargo test`, with the environment of `testenv.sh env`. Read-only,
# so it can be run again at any time. Ends with `secret-scan: N passed, M failed` (N places).
set -euo pipefail

logs=${DBCONN_E2E_LOGS:-${TMPDIR:-/tmp}/dbconn-e2e-logs}
kubectl="${TESTENV_BIN_DIR:?run with the environment of tests/testenv/testenv.sh env}/kubectl"
: "${KUBECONFIG:?run with the environment of tests/testenv/testenv.sh env}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
  # Every password and token the test environment hands out (each service's *_PASSWORD and
  # *_TOKEN in `testenv.sh env`), so a new service is covered without a change here.
  found=0
  while IFS='=' read -r key value; do
    if [[ $key == *_PASSWORD || $key == *_TOKEN ]]; then printf '%s\n' "$value"; found=$((found + 1)); fi
  done < <(bash "${TESTENV_SCRIPT:?}" env)
  (( found >= 3 )) || { echo "secret-scan: testenv.sh env gave only $found passwords" >&2; exit 1; }
  if [[ -f $logs/passwords.txt ]]; then cat "$logs/passwords.txt"; fi
} | sort -u > "$work/passwords"
# A short password would match ordinary text and hide real findings in noise; an empty line
# would match everything.
if awk 'length($0) < 8 { short = 1 } END { exit !short }' "$work/passwords"; then
  echo "secret-scan: a test password is shorter than 8 characters (or a line of passwords.txt is empty); use longer ones in tests" >&2
  exit 1
fi

shopt -s nullglob
operator_logs=("$logs"/*.log)
if (( ${#operator_logs[@]} == 0 )); then
  echo "secret-scan: no operator logs in $logs: did the end-to-end tests run?" >&2
  exit 1
fi

"$kubectl" get events --all-namespaces -o json > "$work/events.json"
"$kubectl" get databaseconnections --all-namespaces -o json > "$work/databaseconnections.json"

passed=0 failed=0
# scan PLACE FILE: fails PLACE when FILE holds any password; names the line, not the password.
scan() {
  local place=$1 file=$2 lines
  if grep -q -F -f "$work/passwords" -- "$file"; then
    lines=$(grep -n -F -f "$work/passwords" -- "$file" | cut -d: -f1 | paste -sd, - || true)
    echo "secret-scan: FAILED: a test password appears in $place (line $lines)" >&2
    failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
}

for file in "${operator_logs[@]}"; do scan "operator log $file" "$file"; done
for file in "$logs"/*.metrics; do scan "operator metrics $file" "$file"; done
scan "Events in all namespaces" "$work/events.json"
scan "DatabaseConnections (status) in all namespaces" "$work/databaseconnections.json"

metrics=("$logs"/*.metrics)
echo "secret-scan: searched ${#operator_logs[@]} operator logs, ${#metrics[@]} /metrics scrapes," \
  "$(grep -c '"involvedObject"' "$work/events.json" || true) Events and" \
  "$(grep -c '"kind": "DatabaseConnection"' "$work/databaseconnections.json" || true) DatabaseConnections" \
  "for $(wc -l < "$work/passwords") passwords"
echo "secret-scan: $passed passed, $failed failed"
(( failed == 0 ))
# A row for the reliability report (tests/common/report.rs writes the same format).
report=${DBCONN_REPORT_DIR:-/tmp/dbconn-report}
mkdir -p "$report"
printf 'security\tsecret scan: operator logs, /metrics, Events, status\tpassed\t%s places, %s passwords\n' \
  "$passed" "$(wc -l < "$work/passwords")" >> "$report/security.tsv"
