# shellcheck shell=bash
# PostgreSQL streaming-replication pairs that a test owns, for failover tests: a primary and a
# standby cloned from it with `pg_basebackup -R`, each on a free loopback port. `up` starts none:
# a test makes its own pair and removes it; `testenv.sh down` removes any left behind. The same
# Debian binaries as services/postgres.sh (its postgres_bin and pg_as; sourced by testenv.sh),
# under root run as the `postgres` OS user. State in $STATE_DIR/pg-pair-NAME: primary/ and
# standby/ (data), primary.log and standby.log. Password (scram-sha-256) auth, TCP only.
#
#   testenv.sh pg-pair up NAME                        (re)create pair NAME; print its ports and login as KEY=VALUE
#   testenv.sh pg-pair stop NAME primary|standby      crash one member (immediate shutdown)
#   testenv.sh pg-pair start NAME primary|standby     start one member again
#   testenv.sh pg-pair promote NAME                   promote the standby; wait until it takes writes
#   testenv.sh pg-pair sql NAME primary|standby SQL   run SQL as the admin in the pair's database (psql -At)
#   testenv.sh pg-pair down NAME                      stop both, remove the pair (quiet when absent)

# Below Linux's ephemeral range, so no client socket holds one of them by chance.
PGPAIR_PORTS=${PGPAIR_PORTS:-16000-16999}
# Known admin login (superuser and replication); the test's login gets a new password per `up`.
PGPAIR_ADMIN_USER=postgres
PGPAIR_ADMIN_PASSWORD=dbconn-pair-admin-pw
PGPAIR_USER=dbconn
PGPAIR_DB=dbconn
TESTENV_DOWN_HOOKS+=(pgpair_down_all)

# _pgpair_dir NAME: the pair's state dir (the name becomes a path, so it is checked).
_pgpair_dir() {
  [[ $1 =~ ^[A-Za-z0-9_-]{1,40}$ ]] || die "pg-pair: bad name '$1' (letters, digits, _ and -)"
  echo "$STATE_DIR/pg-pair-$1"
}

_pgpair_member() {
  [[ $1 == primary || $1 == standby ]] || die "pg-pair: '$1' is neither primary nor standby"
}

# _pgpair_bin DIR: the binaries of the pair's major version once it exists, else the shared server's.
_pgpair_bin() {
  if [[ -f $1/primary/PG_VERSION ]]; then echo "/usr/lib/postgresql/$(<"$1/primary/PG_VERSION")/bin"; else postgres_bin; fi
}

# _pgpair_port DIR MEMBER
_pgpair_port() {
  local ports
  [[ -f $1/ports ]] || die "pg-pair: no pair in $1 (testenv.sh pg-pair up NAME)"
  read -ra ports <"$1/ports"
  if [[ $2 == primary ]]; then echo "${ports[0]}"; else echo "${ports[1]}"; fi
}

# _pgpair_psql PORT USER PASSWORD DB [psql args...]: a password login over TCP.
_pgpair_psql() {
  local port=$1 user=$2 pw=$3 db=$4; shift 4
  PGPASSWORD=$pw PGCONNECT_TIMEOUT=5 "$(postgres_bin)/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$port" -U "$user" -d "$db" "$@"
}

_pgpair_admin() { # _pgpair_admin PORT [psql args...]
  local port=$1; shift
  _pgpair_psql "$port" "$PGPAIR_ADMIN_USER" "$PGPAIR_ADMIN_PASSWORD" "$PGPAIR_DB" "$@"
}

_pgpair_running() { # _pgpair_running DIR MEMBER
  [[ -f $1/$2/postmaster.pid ]] && pg_as "$(_pgpair_bin "$1")/pg_ctl" status -D "$1/$2" >/dev/null 2>&1
}

# _pgpair_ports DIR: reserve two free ports for the pair in DIR/ports. Under a lock, and away from
# the ports of other pairs (running or not) and of the environment's own services (one may be
# stopped by a fault test right now).
_pgpair_ports() {
  local dir=$1 lo=${PGPAIR_PORTS%-*} hi=${PGPAIR_PORTS#*-} eph lock f p i start picked=()
  local taken=" $ETCD_PORT $ETCD_PEER_PORT $APISERVER_PORT "
  read -r eph _ </proc/sys/net/ipv4/ip_local_port_range
  ((lo <= hi && hi < eph)) || die "pg-pair: PGPAIR_PORTS=$PGPAIR_PORTS is not below the ephemeral range (from $eph)"
  for f in "${TESTENV_FORWARDS[@]}"; do taken+="${f##*:} "; done
  exec {lock}>"$STATE_DIR/pg-pair.lock"
  flock -w 30 "$lock" || die "pg-pair: $STATE_DIR/pg-pair.lock stays locked"
  for f in "$STATE_DIR"/pg-pair-*/ports; do
    [[ -f $f ]] && taken+="$(<"$f") "
  done
  start=$((RANDOM % (hi - lo + 1)))
  for ((i = 0; i <= hi - lo && ${#picked[@]} < 2; i++)); do
    p=$((lo + (start + i) % (hi - lo + 1)))
    [[ $taken == *" $p "* ]] || port_open "$p" || picked+=("$p")
  done
  ((${#picked[@]} == 2)) || { exec {lock}>&-; die "pg-pair: no two free ports in $PGPAIR_PORTS"; }
  echo "${picked[*]}" >"$dir/ports"
  exec {lock}>&-
}

# _pgpair_template BIN: a fresh cluster of BIN's major version, made once per STATE_DIR (initdb
# is most of a pair's start-up); each pair's primary is a copy. Not under pg-pair-*: not a pair.
_pgpair_template() {
  local bin=$1 tpl tmp pwfile
  tpl=$STATE_DIR/pgpair-template-$(basename "$(dirname "$bin")")
  if [[ ! -f $tpl/PG_VERSION ]]; then
    log "pg-pair: creating the template cluster $tpl"
    tmp=$(mktemp -d "$STATE_DIR/.pgpair-template.XXXXXX")
    pwfile=$tmp/pw
    (umask 077; printf '%s\n' "$PGPAIR_ADMIN_PASSWORD" >"$pwfile")
    [[ $EUID -eq 0 ]] && chown -R postgres: "$tmp"
    pg_as "$bin/initdb" -D "$tmp/data" -U "$PGPAIR_ADMIN_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 --no-sync >"$tmp/initdb.log" 2>&1 \
      || { cat "$tmp/initdb.log" >&2; rm -rf "$tmp"; die "pg-pair: initdb failed"; }
    # `all` does not cover replication connections: they need their own line.
    pg_as tee "$tmp/data/pg_hba.conf" >/dev/null <<EOF
# testenv pg-pair: password logins only, loopback only
host  all         all                  127.0.0.1/32 scram-sha-256
host  replication $PGPAIR_ADMIN_USER 127.0.0.1/32 scram-sha-256
EOF
    echo "include_if_exists = 'testenv.conf'" | pg_as tee -a "$tmp/data/postgresql.conf" >/dev/null
    # Another `up` may have made it meanwhile: then this copy goes.
    mv -T "$tmp/data" "$tpl" 2>/dev/null || true
    rm -rf "$tmp"
    [[ -f $tpl/PG_VERSION ]] || die "pg-pair: $tpl is not a cluster (remove it)"
  fi
  echo "$tpl"
}

# _pgpair_conf DATA PORT: the settings of one member (pg_basebackup copies the primary's, so the
# standby's are rewritten after it).
_pgpair_conf() {
  pg_as tee "$1/testenv.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $2
# TCP only: no socket in /var/run/postgresql
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
shared_buffers = 32MB
wal_level = replica
hot_standby = on
# a standby stopped for a while can still catch up (no replication slot to outlive a failover)
wal_keep_size = 256MB
# replay positions on the primary (pg_stat_replication) at most 1 s old, for lag checks
wal_receiver_status_interval = 1s
# a throwaway pair: an immediate stop is a process crash, and the kernel keeps what was written
fsync = off
EOF
}

_pgpair_start_member() { # DIR MEMBER
  local dir=$1 m=$2
  if _pgpair_running "$dir" "$m"; then log "pg-pair: the $m of ${dir##*/pg-pair-} is already running"; return 0; fi
  [[ -f $dir/$m/PG_VERSION ]] || die "pg-pair: no $m in $dir (testenv.sh pg-pair up NAME)"
  log "pg-pair: starting the $m of ${dir##*/pg-pair-} on 127.0.0.1:$(_pgpair_port "$dir" "$m")"
  if ! pg_as "$(_pgpair_bin "$dir")/pg_ctl" start -D "$dir/$m" -l "$dir/$m.log" -w -t 60 -s >&2; then
    log "pg-pair: last lines of $dir/$m.log:"; tail -n 30 "$dir/$m.log" >&2
    die "pg-pair: the $m of ${dir##*/pg-pair-} failed to start"
  fi
}

# _pgpair_halt DIR MEMBER: an immediate shutdown, as a crash. When pg_ctl cannot do it, SIGQUIT
# (the same thing) to the postmaster its pid file names, if that is still this member's.
_pgpair_halt() {
  local data=$1/$2 pid i
  [[ -f $data/postmaster.pid ]] || return 0
  pg_as "$(_pgpair_bin "$1")/pg_ctl" stop -D "$data" -m immediate -w -t 30 -s >&2 2>/dev/null && return 0
  pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ && $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *"-D $data "* ]] || return 0
  kill -QUIT "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

pgpair_up() {
  local name=$1 dir bin ports pw i n=0
  dir=$(_pgpair_dir "$name")
  postgres_build
  pgpair_down "$name"
  bin=$(postgres_bin)
  mkdir -p "$dir"
  _pgpair_ports "$dir"
  read -ra ports <"$dir/ports"
  pw=pair-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
  cp -a "$(_pgpair_template "$bin")" "$dir/primary"
  mkdir -m 700 "$dir/standby"
  touch "$dir/primary.log" "$dir/standby.log"
  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$dir/standby" "$dir/primary.log" "$dir/standby.log"
    pg_as test -w "$dir/standby" \
      || die "pg-pair: the postgres OS user cannot reach $STATE_DIR (use a DBCONN_TESTENV_STATE it can reach)"
  fi
  _pgpair_conf "$dir/primary" "${ports[0]}"
  _pgpair_start_member "$dir" primary
  # The login role owns the database and the lag table, as the operator's own login would.
  _pgpair_psql "${ports[0]}" "$PGPAIR_ADMIN_USER" "$PGPAIR_ADMIN_PASSWORD" postgres \
    -v user="$PGPAIR_USER" -v pw="$pw" -v db="$PGPAIR_DB" >/dev/null <<'SQL' \
    || die "pg-pair: creating role $PGPAIR_USER / database $PGPAIR_DB failed"
CREATE ROLE :"user" LOGIN NOSUPERUSER PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"user";
SQL
  _pgpair_psql "${ports[0]}" "$PGPAIR_USER" "$pw" "$PGPAIR_DB" \
    -c 'CREATE TABLE lag_probe (id bigserial PRIMARY KEY, payload text)' >/dev/null \
    || die "pg-pair: creating table lag_probe as $PGPAIR_USER failed"
  # -R: standby.signal and primary_conninfo (with the password); -c fast: no spread checkpoint
  # to wait for.
  log "pg-pair: cloning the standby of $name"
  PGPASSWORD=$PGPAIR_ADMIN_PASSWORD pg_as "$bin/pg_basebackup" -h 127.0.0.1 -p "${ports[0]}" \
    -U "$PGPAIR_ADMIN_USER" -D "$dir/standby" -R -X stream -c fast --no-sync >&2 2>"$dir/basebackup.log" \
    || { cat "$dir/basebackup.log" >&2; die "pg-pair: pg_basebackup of $name failed"; }
  _pgpair_conf "$dir/standby" "${ports[1]}"
  _pgpair_start_member "$dir" standby
  for ((i = 0; i < 300; i++)); do
    n=$(_pgpair_admin "${ports[0]}" -At -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null) || n=0
    [[ $n == 1 ]] && break
    sleep 0.2
  done
  if [[ $n != 1 ]]; then
    log "pg-pair: last lines of $dir/standby.log:"; tail -n 30 "$dir/standby.log" >&2
    die "pg-pair: the standby of $name is not streaming from its primary after 60s"
  fi
  log "pg-pair: $name ready (primary 127.0.0.1:${ports[0]}, standby 127.0.0.1:${ports[1]}, streaming)"
  (umask 077
   printf 'PRIMARY_PORT=%s\nSTANDBY_PORT=%s\nUSER=%s\nPASSWORD=%s\nDATABASE=%s\n' \
     "${ports[0]}" "${ports[1]}" "$PGPAIR_USER" "$pw" "$PGPAIR_DB" | tee "$dir/pair.env")
}

pgpair_promote() {
  local dir port i
  dir=$(_pgpair_dir "$1")
  port=$(_pgpair_port "$dir" standby)
  _pgpair_running "$dir" standby || die "pg-pair: the standby of $1 is not running"
  if [[ $(_pgpair_admin "$port" -At -c 'SELECT pg_is_in_recovery()') == f ]]; then
    log "pg-pair: the standby of $1 is already promoted"; return 0
  fi
  log "pg-pair: promoting the standby of $1"
  pg_as "$(_pgpair_bin "$dir")/pg_ctl" promote -D "$dir/standby" -w -t 60 -s >&2 \
    || die "pg-pair: pg_ctl promote failed (log: $dir/standby.log)"
  # pg_ctl waits for the end of recovery; wait for what clients see too.
  for ((i = 0; i < 300; i++)); do
    [[ $(_pgpair_admin "$port" -At -c 'SELECT pg_is_in_recovery()' 2>/dev/null) == f ]] && return 0
    sleep 0.2
  done
  die "pg-pair: the standby of $1 still is in recovery 60s after promotion (log: $dir/standby.log)"
}

pgpair_down() {
  local dir m
  dir=$(_pgpair_dir "$1")
  [[ -d $dir ]] || return 0
  log "pg-pair: removing $1"
  for m in standby primary; do _pgpair_halt "$dir" "$m"; done
  rm -rf "$dir"
}

# For `testenv.sh down`: every pair there is a directory of.
pgpair_down_all() {
  local d
  for d in "$STATE_DIR"/pg-pair-*/; do
    [[ -d $d ]] || continue
    d=${d%/}
    pgpair_down "${d##*/pg-pair-}"
  done
}

testenv_cmd_pg_pair() {
  local action=${1:-} dir
  case $action in
    up) pgpair_up "${2:?NAME}" ;;
    down) pgpair_down "${2:?NAME}" ;;
    promote) pgpair_promote "${2:?NAME}" ;;
    stop | start | sql)
      dir=$(_pgpair_dir "${2:?NAME}")
      _pgpair_member "${3:?primary or standby}"
      [[ -f $dir/ports ]] || die "pg-pair: there is no pair $2 (testenv.sh pg-pair up $2)"
      case $action in
        stop)
          if _pgpair_running "$dir" "$3"; then
            log "pg-pair: crashing the $3 of $2 (immediate shutdown)"
            pg_as "$(_pgpair_bin "$dir")/pg_ctl" stop -D "$dir/$3" -m immediate -w -t 60 -s >&2
          else
            log "pg-pair: the $3 of $2 is not running"
          fi
          ;;
        start) _pgpair_start_member "$dir" "$3" ;;
        sql) _pgpair_admin "$(_pgpair_port "$dir" "$3")" -At -c "${4:?SQL}" ;;
      esac
      ;;
    *) die "usage: testenv.sh pg-pair up|down|promote NAME | stop|start NAME primary|standby | sql NAME primary|standby SQL" ;;
  esac
}
