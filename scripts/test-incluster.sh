#!/usr/bin/env bash
# The in-cluster suite (tests/incluster.rs): the single-node cluster (testenv.sh cluster-up),
# the operator image built here and imported (scripts/image.sh), then the tests, which install
# the chart themselves. The cluster is stopped at the end (and everything it set up on the host
# removed); the plain environment, which holds the databases, is stopped only when this script
# started it. scripts/test.sh runs it as part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dbconn-operator/target}
testenv=tests/testenv/testenv.sh
started=$SECONDS

own_env=false
if [[ $(bash "$testenv" status) == *stopped* ]]; then
  bash "$testenv" up >/dev/null
  own_env=true
fi
trap 'bash "$testenv" cluster-down >/dev/null 2>&1 || true; if $own_env; then bash "$testenv" down >/dev/null 2>&1 || true; fi' EXIT
set -a
# shellcheck disable=SC1090
source <(bash "$testenv" env)
set +a

bash "$testenv" cluster-up
echo "[test-incluster] cluster up at $((SECONDS - started))s"
image_env=$(bash scripts/image.sh)
set -a
eval "$image_env"   # DBCONN_IMAGE=... DBCONN_IMAGE_ARCHIVE=..., for tests/incluster.rs
set +a
echo "[test-incluster] image $DBCONN_IMAGE at $((SECONDS - started))s"

cargo clippy --locked --features incluster --test incluster --test incluster_rollout --test incluster_sharding -- -D warnings
cargo test --locked --features incluster --test incluster --test incluster_rollout --test incluster_sharding -- --nocapture
echo "[test-incluster] done in $((SECONDS - started))s"
