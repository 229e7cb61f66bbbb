#!/usr/bin/env bash
# The user's path, on the cluster mode of the test environment: a single-node cluster that runs
# Pods (testenv.sh cluster-up), the operator image built here and imported (scripts/image.sh),
# `helm install` of charts/dbconn-operator into a namespace that enforces the restricted Pod
# Security level, the examples applied, ending in `kubectl get dbconn -o wide`.
#
# The databases are those of the plain test environment (testenv.sh up, started when stopped);
# the cluster forwards their ports from the bridge address, so the examples' 127.0.0.1 becomes
# that address here (inside a Pod, 127.0.0.1 is the Pod itself).
# Everything keeps running afterwards; `testenv.sh cluster-down` stops the cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

testenv=tests/testenv/testenv.sh
namespace=${DBCONN_NAMESPACE:-dbconn-system}
demo=${DBCONN_DEMO_NAMESPACE:-demo}
release=dbconn
started=$SECONDS
log() { printf '[cluster-demo] %s\n' "$*" >&2; }

# The databases: start the plain environment only when something of it is stopped.
if [[ $(bash "$testenv" status) == *stopped* ]]; then bash "$testenv" up >/dev/null; fi
bash "$testenv" cluster-up
set -a
# shellcheck disable=SC1090
source <(bash "$testenv" cluster-env)
set +a
kubectl=$TESTENV_BIN_DIR/kubectl
helm=$TESTENV_BIN_DIR/helm
addr=${CLUSTER_ADDR:-10.244.0.1}

# scripts/image.sh imports the image into the running cluster and prints DBCONN_IMAGE=repo:tag.
image=$(bash scripts/image.sh | sed -n 's/^DBCONN_IMAGE=//p')
log "image $image"

"$kubectl" create namespace "$namespace" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
"$kubectl" label --overwrite namespace "$namespace" \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null
# pullPolicy Never: the image exists only in this node's containerd.
"$helm" upgrade --install "$release" charts/dbconn-operator --namespace "$namespace" \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --wait --timeout 120s >/dev/null
log "operator installed ($((SECONDS - started))s)"

"$kubectl" create namespace "$demo" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
for example in examples/*.yaml; do
  sed "s#://127\.0\.0\.1:#://$addr:#" "$example" | "$kubectl" apply -n "$demo" -f -
done
# The table is printed either way; the demo fails when an example is not Ready, so a broken
# setup never looks like a working one.
ready=0
"$kubectl" wait -n "$demo" --for=condition=Ready dbconn --all --timeout=120s >/dev/null || ready=$?
echo
"$kubectl" get pods -n "$namespace" -o wide
echo
"$kubectl" get dbconn -n "$demo" -o wide
if ((ready != 0)); then
  log "not every example became Ready within 120s: kubectl describe dbconn -n $demo says why; KUBECONFIG=$KUBECONFIG"
  exit 1
fi
log "done in $((SECONDS - started))s; KUBECONFIG=$KUBECONFIG"
