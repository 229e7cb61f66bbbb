#!/usr/bin/env bash
# The soak (`make soak`, not in CI): an hour of faults on 1,000 connections, then the truth
# (benches/soak/main.rs says what it does and checks). Arguments go to it:
#
#   scripts/soak.sh                                  the hour
#   scripts/soak.sh --minutes 10 --connections 100   a short one
#
# Uses the running test environment, or starts one (and stops it at the end) like scripts/test.sh.
# The table goes to stdout and to $DBCONN_SOAK_OUT (default /tmp/dbconn-soak.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${DBCONN_SOAK_OUT:-/tmp/dbconn-soak.md}
# shellcheck source=scripts/use-testenv.sh
source scripts/use-testenv.sh

# 1,000 connections: the operator replicas and the soak's proxies hold a socket or two each.
ulimit -n "$(ulimit -Hn)"
cargo bench --locked --bench soak -- "$@" | tee "$out"
