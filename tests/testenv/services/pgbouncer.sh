# shellcheck shell=bash
# PgBouncer from Debian's packages on 127.0.0.1:$PGBOUNCER_PORT, in front of services/postgres.sh
# (every database there), for benches that open thousands of connections: PostgreSQL allows 300.
# Sourced by testenv.sh; `up` starts it after postgres. Config and auth file in
# $STATE_DIR/pgbouncer (rewritten on every start), log in $STATE_DIR/pgbouncer.log. Plain TCP, no
# socket. Under root it runs as Debian's `postgres` OS user (it refuses to run as root).
#
# Logins are PostgreSQL's (POSTGRES_USER / POSTGRES_PASSWORD, POSTGRES_DB), by scram-sha-256
# against the SCRAM secret auth_query reads from pg_shadow: PgBouncer spends ~0.25 ms of its one
# thread per login. (With plain passwords in the auth file it derived the key at each login,
# 3.5-4.5 ms, ~250 logins/s: 1,000 connections took 5-6 s to log in instead of 2.2-2.7 s.)
# Transaction pooling: a session's prepared statements and SET do not outlive its transaction.
# The admin (POSTGRES_ADMIN_USER) also reaches the console, database `pgbouncer` (SHOW POOLS).

# Below Linux's ephemeral range; pg-pair's ports (16000-16999) skip it, a TESTENV_FORWARDS port.
export PGBOUNCER_PORT=${PGBOUNCER_PORT:-16432}
TESTENV_DATABASES+=(pgbouncer)
TESTENV_FORWARDS+=("pgbouncer:$PGBOUNCER_PORT")
TESTENV_AFTER+=(pgbouncer:postgres)

PGBOUNCER_DIR=$STATE_DIR/pgbouncer
# In /usr/sbin, which a non-root PATH may lack.
PGBOUNCER_SERVER=/usr/sbin/pgbouncer
# One connection per DatabaseConnection object at the scale bench's 10,000, plus room.
PGBOUNCER_MAX_CLIENTS=12000

pgbouncer_build() {
  [[ -x $PGBOUNCER_SERVER ]] && return 0
  log "pgbouncer: installing PgBouncer from Debian"
  testenv_apt_install pgbouncer
}

pgbouncer_running() { pid_alive pgbouncer; }

# pgbouncer_psql USER PASSWORD DB [psql args...]: a password login through PgBouncer.
pgbouncer_psql() {
  local user=$1 pw=$2 db=$3; shift 3
  PGPASSWORD=$pw PGCONNECT_TIMEOUT=5 "$(postgres_bin)/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$PGBOUNCER_PORT" -U "$user" -d "$db" "$@"
}

# An auth file string: in double quotes, a double quote doubled.
pgbouncer_quote() { printf '"%s"' "${1//\"/\"\"}"; }

pgbouncer_config() {
  local d=$PGBOUNCER_DIR
  mkdir -p "$d"
  # Only the admin is in the auth file, in plain: it is auth_user, PgBouncer's own login for
  # auth_query. Every other user's SCRAM secret is looked up in PostgreSQL at each login, as
  # CloudNativePG's pooler does: always the server's (a password set anew, a role created by a
  # test, all seen at once), and PgBouncer logs in to the server with the client's keys.
  (umask 077
   printf '%s %s\n' "$(pgbouncer_quote "$POSTGRES_ADMIN_USER")" "$(pgbouncer_quote "$POSTGRES_ADMIN_PASSWORD")" >"$d/userlist.txt")
  cat >"$d/pgbouncer.ini" <<EOF
;; Written by tests/testenv/services/pgbouncer.sh on every start.
[databases]
* = host=127.0.0.1 port=$POSTGRES_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
; TCP only: no socket in /tmp
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $d/userlist.txt
auth_user = $POSTGRES_ADMIN_USER
auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename = \$1
admin_users = $POSTGRES_ADMIN_USER
pool_mode = transaction
; no session state to reset between transactions (used in session mode only)
server_reset_query =
max_client_conn = $PGBOUNCER_MAX_CLIENTS
; per database and user: well under PostgreSQL's max_connections = 300, which tests share
default_pool_size = 20
; thousands of clients connect at once when the operator starts
listen_backlog = 4096
; sent by drivers at login (JDBC, tokio-postgres with options set); PgBouncer refuses unknown ones
ignore_startup_parameters = extra_float_digits,options
; fault tests restart postgres: retry its logins within a second, not the default 15
server_login_retry = 1
; thousands of clients: a line per connection would drown the log
log_connections = 0
log_disconnections = 0
EOF
  # Read again as the postgres OS user on RELOAD.
  [[ $EUID -eq 0 ]] && chown -R postgres: "$d"
  return 0
}

pgbouncer_start() {
  local user=() nofile=25000 hard
  if pgbouncer_running; then log "pgbouncer: already running (pid $(<"$STATE_DIR/pgbouncer.pid"))"; return 0; fi
  pgbouncer_build
  port_open "$PGBOUNCER_PORT" && die "pgbouncer: 127.0.0.1:$PGBOUNCER_PORT is already in use by another process"
  pgbouncer_config
  # Started as root, it switches user itself once its port is open: the pid is the server's.
  [[ $EUID -eq 0 ]] && user=(-u postgres)
  # A descriptor per client: raise the limit (for PgBouncer alone) as far as the hard one allows.
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] || ((hard >= nofile)) || nofile=$hard
  ((nofile > PGBOUNCER_MAX_CLIENTS + 100)) \
    || log "pgbouncer: warning: open-file limit $nofile (hard) is below max_client_conn $PGBOUNCER_MAX_CLIENTS"
  log "pgbouncer: starting on 127.0.0.1:$PGBOUNCER_PORT for 127.0.0.1:$POSTGRES_PORT (log: $STATE_DIR/pgbouncer.log)"
  (ulimit -n "$nofile" && testenv_spawn pgbouncer "$PGBOUNCER_SERVER" "${user[@]}" "$PGBOUNCER_DIR/pgbouncer.ini") || exit 1
  testenv_wait_up pgbouncer 30 pgbouncer_psql "$POSTGRES_ADMIN_USER" "$POSTGRES_ADMIN_PASSWORD" pgbouncer -c 'SHOW VERSION'
  # Through to the server, as a test logs in (unless a fault test stopped postgres).
  if postgres_running; then
    wait_for "pgbouncer: login as $POSTGRES_TEST_USER through to postgres" 30 \
      pgbouncer_psql "$POSTGRES_TEST_USER" "$POSTGRES_TEST_PASSWORD" "$POSTGRES_TEST_DB" -c 'SELECT 1'
  else
    log "pgbouncer: postgres is stopped, so no login through to it was tried"
  fi
  log "pgbouncer: ready"
}

# SIGINT: a safe shutdown (transactions finish). SIGTERM would wait for every client to leave in
# PgBouncer >= 1.23.
pgbouncer_stop() {
  pgbouncer_running && log "pgbouncer: stopping"
  stop_pid pgbouncer INT
}

pgbouncer_kill() {
  pgbouncer_running && log "pgbouncer: killing (SIGKILL)"
  kill_pid pgbouncer
}

pgbouncer_env() {
  echo "PGBOUNCER_HOST=127.0.0.1"
  echo "PGBOUNCER_PORT=$PGBOUNCER_PORT"
}
