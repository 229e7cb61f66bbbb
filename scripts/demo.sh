#!/usr/bin/env bash
# A local demo from a fresh clone: starts the control plane and the databases, installs the CRD,
# runs the operator, applies the examples and ends with `kubectl get dbconn`.
# Everything keeps running afterwards; `make down` stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dbconn-operator/target}
testenv=tests/testenv/testenv.sh
bash "$testenv" up >/dev/null
set -a
# shellcheck disable=SC1090
source <(bash "$testenv" env)
set +a
state=${DBCONN_TESTENV_STATE:-/tmp/dbconn-testenv}
kubectl=$TESTENV_BIN_DIR/kubectl

cargo build --locked --bin dbconn-operator
"$kubectl" apply --server-side --force-conflicts -f crds/
"$kubectl" wait --for=condition=Established --timeout=60s crd/databaseconnections.dbconn.dev

if [[ -f $state/operator.pid ]] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  kill "$(cat "$state/operator.pid")"
fi
"$CARGO_TARGET_DIR/debug/dbconn-operator" >"$state/operator.log" 2>&1 &
echo $! >"$state/operator.pid"
echo "[demo] operator running (pid $(cat "$state/operator.pid")), log: $state/operator.log"

"$kubectl" create namespace demo --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
for example in examples/*.yaml; do
  "$kubectl" apply -n demo -f "$example"
done
ready=0
"$kubectl" wait -n demo --for=condition=Ready dbconn --all --timeout=120s >/dev/null || ready=$?
echo
echo "[demo] KUBECONFIG=$KUBECONFIG"
"$kubectl" get dbconn -n demo -o wide
if ((ready != 0)); then
  echo "[demo] not every example became Ready within 120s: kubectl describe dbconn -n demo says why" >&2
  exit 1
fi
