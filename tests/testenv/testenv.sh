#!/usr/bin/env bash
# One entry point for the real test environment: kube-apiserver + etcd, Neo4j 5, PostgreSQL.
# Everything listens on 127.0.0.1 only. Builds are cached outside the repo (see CACHE_DIR).
#
#   testenv.sh up            build what is missing, start everything, wait until each answers
#   testenv.sh down          stop everything
#   testenv.sh env           print the environment the tests read (KEY=VALUE lines)
#   testenv.sh status        say what runs
#   testenv.sh stop SERVICE  stop one service (neo4j|postgres|apiserver|etcd), for fault tests
#   testenv.sh start SERVICE start one service again
#   testenv.sh kill SERVICE  crash one service (SIGKILL; PostgreSQL: immediate shutdown), for fault tests
#   testenv.sh judges        build tests/gitops.rs' judges unless cached; print the binary's path
#
# Cluster mode (lib/cluster.sh): a single-node cluster that runs Pods, with its own state dir
# (/tmp/dbconn-cluster) and ports, so it can run beside the environment above.
#   testenv.sh cluster-up | cluster-down | cluster-status | cluster-env
#   testenv.sh cluster-import FILE   load an OCI archive into the cluster's containerd
set -euo pipefail

case ${1:-} in
  cluster-*)
    : "${DBCONN_TESTENV_STATE:=/tmp/dbconn-cluster}"
    : "${ETCD_PORT:=33790}" "${ETCD_PEER_PORT:=33800}" "${APISERVER_PORT:=26443}"
    ;;
esac

TESTENV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export TESTENV_DIR
export CACHE_DIR=${DBCONN_TESTENV_CACHE:-$HOME/.cache/dbconn-testenv}
export STATE_DIR=${DBCONN_TESTENV_STATE:-/tmp/dbconn-testenv}
export BIN_DIR=$CACHE_DIR/bin
mkdir -p "$CACHE_DIR" "$BIN_DIR" "$STATE_DIR"

# Fixed loopback ports, chosen away from the services' defaults so a developer's own
# Neo4j or PostgreSQL on the default port is never touched.
export ETCD_PORT=${ETCD_PORT:-23790}
export ETCD_PEER_PORT=${ETCD_PEER_PORT:-23800}
export APISERVER_PORT=${APISERVER_PORT:-16443}
export NEO4J_BOLT_PORT=${NEO4J_BOLT_PORT:-17687}
export POSTGRES_PORT=${POSTGRES_PORT:-15432}

# Known test credentials; they exist only inside this throwaway environment.
export NEO4J_TEST_USER=neo4j
export NEO4J_TEST_PASSWORD=${NEO4J_TEST_PASSWORD:-dbconn-test-pw}
export POSTGRES_TEST_USER=dbconn
export POSTGRES_TEST_PASSWORD=${POSTGRES_TEST_PASSWORD:-dbconn-test-pw}
export POSTGRES_TEST_DB=dbconn

# shellcheck source=lib/common.sh
source "$TESTENV_DIR/lib/common.sh"
source "$TESTENV_DIR/lib/etcd.sh"
source "$TESTENV_DIR/lib/k8s.sh"
source "$TESTENV_DIR/lib/neo4j.sh"
source "$TESTENV_DIR/lib/postgres.sh"
source "$TESTENV_DIR/lib/judges.sh"
source "$TESTENV_DIR/lib/promtool.sh"
source "$TESTENV_DIR/lib/cluster-pki.sh"
source "$TESTENV_DIR/lib/cluster-host.sh"
source "$TESTENV_DIR/lib/cluster.sh"

SERVICES=(etcd apiserver neo4j postgres)

cmd_up() {
  # Build first (idempotent, cached), then start; a running service is left alone.
  etcd_build; k8s_build; neo4j_build; postgres_build; promtool_build
  judges_build >/dev/null
  for s in "${SERVICES[@]}"; do "${s}_start"; done
  cmd_env > "$STATE_DIR/env"
  cmd_env
}

cmd_down() {
  local i
  for ((i=${#SERVICES[@]}-1; i>=0; i--)); do "${SERVICES[$i]}_stop" || true; done
}

cmd_env() {
  k8s_env; neo4j_env; postgres_env
  echo "TESTENV_BIN_DIR=$BIN_DIR"
  echo "TESTENV_SCRIPT=$TESTENV_DIR/testenv.sh"
}

cmd_status() {
  for s in "${SERVICES[@]}"; do
    if "${s}_running"; then echo "$s: running"; else echo "$s: stopped"; fi
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  stop) "${2:?service}_stop" ;;
  start) "${2:?service}_start" ;;
  kill) "${2:?service}_kill" ;;
  judges) judges_build ;;
  cluster-up) cluster_up ;;
  cluster-down) cluster_down ;;
  cluster-status) cluster_status ;;
  cluster-env) printf '%s\n' "KUBECONFIG=$STATE_DIR/kubeconfig" "TESTENV_BIN_DIR=$BIN_DIR" "CLUSTER_ADDR=$CLUSTER_ADDR" ;;
  cluster-import) cluster_image_import "${2:?OCI archive}" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
