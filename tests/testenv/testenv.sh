#!/usr/bin/env bash
# One entry point for the real test environment: kube-apiserver + etcd, and the servers the tests
# connect to, a file each in services/ (Neo4j 5, PostgreSQL, PostgreSQL with client certificates,
# PgBouncer in front of PostgreSQL, MariaDB, nginx). Everything listens on 127.0.0.1 only. Builds
# are cached outside the repo (see CACHE_DIR).
#
#   testenv.sh up            build what is missing, start everything, wait until each answers
#   testenv.sh down          stop everything
#   testenv.sh env           print the environment the tests read (KEY=VALUE lines)
#   testenv.sh status        say what runs
#   testenv.sh stop SERVICE  stop one service (etcd, apiserver, or a file's name in services/),
#                            for fault tests
#   testenv.sh start SERVICE start one service again
#   testenv.sh kill SERVICE  crash one service (SIGKILL; PostgreSQL: immediate shutdown), for fault tests
#   testenv.sh judges        build tests/gitops.rs' judges unless cached; print the binary's path
#   (plus the subcommands a service or lib/testca.sh adds; the usage text lists them)
#
# A service registers itself, so adding one touches only its own file: services/NAME.sh appends
# NAME to TESTENV_DATABASES and "LABEL:PORT" to TESTENV_FORWARDS (each port Pods of the cluster
# mode reach it on), sets its port and test credentials, and defines NAME_build, NAME_start,
# NAME_stop, NAME_kill, NAME_running and NAME_env; a function testenv_cmd_FOO_BAR is the
# subcommand foo-bar. A file may also add a function to TESTENV_DOWN_HOOKS, which `down` runs
# first (services/pgpair.sh: the replication pairs tests left behind), and "NAME:OTHER" to
# TESTENV_AFTER when it needs OTHER running first (services/pgbouncer.sh: postgres): `up` then
# starts it after OTHER, `down` stops it before.
#
# Cluster mode (lib/cluster.sh): a single-node cluster that runs Pods, with its own state dir
# (/tmp/dbconn-cluster) and ports, so it can run beside the environment above.
#   testenv.sh cluster-up | cluster-down | cluster-status | cluster-env
#   testenv.sh cluster-import FILE   load an OCI archive into the cluster's containerd
set -euo pipefail

case ${1:-} in
  cluster-*)
    : "${DBCONN_TESTENV_STATE:=/tmp/dbconn-cluster}"
    # Below Linux's ephemeral range (32768-60999): a client socket that happened to get 33790 as
    # its local port once made this etcd fail to start ("address already in use").
    : "${ETCD_PORT:=24790}" "${ETCD_PEER_PORT:=24800}" "${APISERVER_PORT:=26443}"
    ;;
esac

TESTENV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export TESTENV_DIR
export CACHE_DIR=${DBCONN_TESTENV_CACHE:-$HOME/.cache/dbconn-testenv}
export STATE_DIR=${DBCONN_TESTENV_STATE:-/tmp/dbconn-testenv}
export BIN_DIR=$CACHE_DIR/bin
mkdir -p "$CACHE_DIR" "$BIN_DIR" "$STATE_DIR"

# Fixed loopback ports, chosen away from the defaults so a developer's own servers are never
# touched (each service in services/ sets its own the same way).
export ETCD_PORT=${ETCD_PORT:-23790}
export ETCD_PEER_PORT=${ETCD_PEER_PORT:-23800}
export APISERVER_PORT=${APISERVER_PORT:-16443}

# shellcheck source=lib/common.sh
source "$TESTENV_DIR/lib/common.sh"
source "$TESTENV_DIR/lib/etcd.sh"
source "$TESTENV_DIR/lib/k8s.sh"
source "$TESTENV_DIR/lib/testca.sh"
TESTENV_DATABASES=()
TESTENV_FORWARDS=()
TESTENV_DOWN_HOOKS=()
TESTENV_AFTER=()
for service_file in "$TESTENV_DIR"/services/*.sh; do
  # shellcheck source=/dev/null
  source "$service_file"
done
# Files come in name order; move each service named in TESTENV_AFTER right behind the one it needs.
for after in "${TESTENV_AFTER[@]}"; do
  ordered=()
  for db in "${TESTENV_DATABASES[@]}"; do
    [[ $db == "${after%%:*}" ]] || ordered+=("$db")
    [[ $db == "${after#*:}" ]] && ordered+=("${after%%:*}")
  done
  TESTENV_DATABASES=("${ordered[@]}")
done
source "$TESTENV_DIR/lib/judges.sh"
source "$TESTENV_DIR/lib/promtool.sh"
source "$TESTENV_DIR/lib/cluster-pki.sh"
source "$TESTENV_DIR/lib/cluster-host.sh"
source "$TESTENV_DIR/lib/cluster.sh"

SERVICES=(etcd apiserver "${TESTENV_DATABASES[@]}")

cmd_up() {
  local db
  # Build first (idempotent, cached), then start; a running service is left alone.
  etcd_build; k8s_build
  for db in "${TESTENV_DATABASES[@]}"; do "${db}_build"; done
  promtool_build
  judges_build >/dev/null
  for s in "${SERVICES[@]}"; do "${s}_start"; done
  cmd_env > "$STATE_DIR/env"
  cmd_env
}

cmd_down() {
  local i h
  for h in "${TESTENV_DOWN_HOOKS[@]}"; do ("$h") || true; done
  for ((i=${#SERVICES[@]}-1; i>=0; i--)); do "${SERVICES[$i]}_stop" || true; done
}

cmd_env() {
  local db
  k8s_env
  for db in "${TESTENV_DATABASES[@]}"; do "${db}_env"; done
  echo "TESTENV_CA=$TESTCA_DIR/ca.crt"
  echo "TESTENV_BIN_DIR=$BIN_DIR"
  echo "TESTENV_SCRIPT=$TESTENV_DIR/testenv.sh"
}

cmd_status() {
  for s in "${SERVICES[@]}"; do
    if "${s}_running"; then echo "$s: running"; else echo "$s: stopped"; fi
  done
}

# service_do NAME ACTION: NAME_ACTION, for a service this environment has.
service_do() {
  local s
  for s in "${SERVICES[@]}"; do
    if [[ $s == "$1" ]]; then "${1}_$2"; return; fi
  done
  die "unknown service '$1' (one of: ${SERVICES[*]})"
}

usage() {
  awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"
  echo "# Subcommands of the services:"
  grep -h '^#   testenv\.sh ' "$TESTENV_DIR"/services/*.sh "$TESTENV_DIR"/lib/testca.sh
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  stop) service_do "${2:?service}" stop ;;
  start) service_do "${2:?service}" start ;;
  kill) service_do "${2:?service}" kill ;;
  judges) judges_build ;;
  cluster-up) cluster_up ;;
  cluster-down) cluster_down ;;
  cluster-status) cluster_status ;;
  cluster-env) printf '%s\n' "KUBECONFIG=$STATE_DIR/kubeconfig" "TESTENV_BIN_DIR=$BIN_DIR" "CLUSTER_ADDR=$CLUSTER_ADDR" ;;
  cluster-import) cluster_image_import "${2:?OCI archive}" ;;
  *)
    # A subcommand a service defines (testenv_cmd_FOO_BAR for foo-bar), else the usage.
    cmd=testenv_cmd_${1:-}
    cmd=${cmd//-/_}
    if [[ -n ${1:-} ]] && declare -F "$cmd" >/dev/null; then shift; "$cmd" "$@"; else usage; exit 2; fi
    ;;
esac
