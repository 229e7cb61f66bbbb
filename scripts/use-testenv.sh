# shellcheck shell=bash
# Sourced by the scripts that run against the test environment (reliability-report.sh, soak.sh):
# uses the running environment, or starts one and stops it when the script exits, then exports
# what the tests read. Expects to be run from the repository's root.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dbconn-operator/target}
testenv=tests/testenv/testenv.sh

# Not `status | grep -q`: under pipefail, grep's early exit makes `status` fail with SIGPIPE.
if [[ $(bash "$testenv" status) == *": stopped"* ]]; then
  trap 'bash "$testenv" down >/dev/null 2>&1 || true' EXIT
  bash "$testenv" up >/dev/null
fi
set -a
# shellcheck disable=SC1090
source <(bash "$testenv" env)
set +a
