# PostgreSQL from Debian's packages on 127.0.0.1:$POSTGRES_PORT. Sourced by testenv.sh.
# Cluster in $STATE_DIR/pgdata (kept across stop/start), socket in $STATE_DIR/pg-socket, log in
# $STATE_DIR/postgres.log. Password (scram-sha-256) auth everywhere. The server refuses to run as
# root, so under root it runs as Debian's `postgres` OS user.

# Away from PostgreSQL's default port, so a developer's own server is never touched.
export POSTGRES_PORT=${POSTGRES_PORT:-15432}
# Known test credentials; they exist only inside this throwaway environment.
export POSTGRES_TEST_USER=dbconn
export POSTGRES_TEST_PASSWORD=${POSTGRES_TEST_PASSWORD:-dbconn-test-pw}
export POSTGRES_TEST_DB=dbconn
TESTENV_DATABASES+=(postgres)
TESTENV_FORWARDS+=("postgres:$POSTGRES_PORT")

POSTGRES_DATA=$STATE_DIR/pgdata
POSTGRES_SOCKET_DIR=$STATE_DIR/pg-socket
POSTGRES_LOG=$STATE_DIR/postgres.log
# Superuser of this throwaway cluster, for set-up (and for tests that need one).
POSTGRES_ADMIN_USER=postgres
POSTGRES_ADMIN_PASSWORD=dbconn-admin-pw

# The server binaries: those of the cluster's major version once it exists, else the newest installed.
postgres_bin() {
  if [[ -f $POSTGRES_DATA/PG_VERSION ]]; then
    echo "/usr/lib/postgresql/$(<"$POSTGRES_DATA/PG_VERSION")/bin"
  else
    find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1
  fi
}

# Run a server tool as the OS user that owns the cluster (without inherited descriptors: see
# detached in common.sh; pg_ctl start leaves the server running).
pg_as() {
  if [[ $EUID -eq 0 ]]; then (cd / && detached runuser -u postgres -- "$@"); else (detached "$@"); fi
}

postgres_build() {
  local bin; bin=$(postgres_bin)
  [[ -n $bin && -x $bin/initdb && -x $bin/postgres ]] && return 0
  log "postgres: installing PostgreSQL from Debian"
  testenv_apt_install postgresql
}

postgres_running() {
  local bin; bin=$(postgres_bin)
  [[ -f $POSTGRES_DATA/postmaster.pid && -n $bin ]] && pg_as "$bin/pg_ctl" status -D "$POSTGRES_DATA" >/dev/null 2>&1
}

postgres_psql() { # postgres_psql USER PASSWORD DB [psql args...]: a password login over TCP
  local user=$1 pw=$2 db=$3; shift 3
  PGPASSWORD=$pw PGCONNECT_TIMEOUT=5 "$(postgres_bin)/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$user" -d "$db" "$@"
}

postgres_init() {
  local bin=$1 pwfile=$STATE_DIR/.pg-admin-pw
  log "postgres: creating a cluster in $POSTGRES_DATA"
  rm -rf "$POSTGRES_DATA"; mkdir -p "$POSTGRES_DATA"; chmod 700 "$POSTGRES_DATA"
  (umask 077; printf '%s\n' "$POSTGRES_ADMIN_PASSWORD" > "$pwfile")
  [[ $EUID -eq 0 ]] && chown postgres: "$POSTGRES_DATA" "$pwfile"
  pg_as "$bin/initdb" -D "$POSTGRES_DATA" -U "$POSTGRES_ADMIN_USER" --pwfile="$pwfile" \
    --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$STATE_DIR/postgres-initdb.log" 2>&1 \
    || { rm -f "$pwfile"; cat "$STATE_DIR/postgres-initdb.log" >&2; die "postgres: initdb failed"; }
  rm -f "$pwfile"
  pg_as tee "$POSTGRES_DATA/pg_hba.conf" >/dev/null <<'EOF'
# testenv: password logins only, loopback only
local all all              scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
EOF
  echo "include_if_exists = 'testenv.conf'" | pg_as tee -a "$POSTGRES_DATA/postgresql.conf" >/dev/null
}

# Role and database for the tests; idempotent, run on every start (so a changed password applies).
postgres_provision() {
  postgres_psql "$POSTGRES_ADMIN_USER" "$POSTGRES_ADMIN_PASSWORD" postgres \
    -v user="$POSTGRES_TEST_USER" -v pw="$POSTGRES_TEST_PASSWORD" -v db="$POSTGRES_TEST_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER PASSWORD %L', :'user', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

postgres_start() {
  local bin
  if postgres_running; then log "postgres: already running"; return 0; fi
  postgres_build
  bin=$(postgres_bin)
  port_open "$POSTGRES_PORT" \
    && die "postgres: 127.0.0.1:$POSTGRES_PORT is already in use by another process"
  mkdir -p "$POSTGRES_SOCKET_DIR"; touch "$POSTGRES_LOG"
  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$POSTGRES_SOCKET_DIR" "$POSTGRES_LOG"
    pg_as test -w "$POSTGRES_SOCKET_DIR" \
      || die "postgres: the postgres OS user cannot reach $STATE_DIR (use a DBCONN_TESTENV_STATE it can reach)"
  fi
  [[ -f $POSTGRES_DATA/PG_VERSION ]] || { postgres_init "$bin"; bin=$(postgres_bin); }
  # Settings that follow the environment are rewritten on every start.
  pg_as tee "$POSTGRES_DATA/testenv.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $POSTGRES_PORT
unix_socket_directories = '$POSTGRES_SOCKET_DIR'
password_encryption = 'scram-sha-256'
max_connections = 300
shared_buffers = 64MB
# a throwaway test cluster: durability traded for speed (a clean stop still writes everything)
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  log "postgres: starting on 127.0.0.1:$POSTGRES_PORT (log: $POSTGRES_LOG)"
  if ! pg_as "$bin/pg_ctl" start -D "$POSTGRES_DATA" -l "$POSTGRES_LOG" -w -t 60 -s; then
    log "postgres: last lines of $POSTGRES_LOG:"; tail -n 30 "$POSTGRES_LOG" >&2
    die "postgres failed to start"
  fi
  wait_for "postgres (pg_isready)" 30 "$bin/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"
  postgres_provision >/dev/null || die "postgres: creating role $POSTGRES_TEST_USER / database $POSTGRES_TEST_DB failed"
  wait_for "postgres password login as $POSTGRES_TEST_USER" 30 \
    postgres_psql "$POSTGRES_TEST_USER" "$POSTGRES_TEST_PASSWORD" "$POSTGRES_TEST_DB" -c 'SELECT 1'
  log "postgres: ready"
}

postgres_stop() {
  postgres_running || return 0
  log "postgres: stopping"
  pg_as "$(postgres_bin)/pg_ctl" stop -D "$POSTGRES_DATA" -m fast -w -t 60 -s
}

# A crash as PostgreSQL knows it: an immediate shutdown (SIGQUIT to every process, no
# checkpoint; the next start runs crash recovery). A SIGKILL of the postmaster alone would leave
# its backends running and holding shared memory, so the next start would refuse to run.
postgres_kill() {
  postgres_running || return 0
  log "postgres: crashing (immediate shutdown)"
  pg_as "$(postgres_bin)/pg_ctl" stop -D "$POSTGRES_DATA" -m immediate -w -t 60 -s
}

# Percent-encode for the userinfo/path parts of a URI.
postgres_urlencode() {
  local LC_ALL=C s=$1 i c out=
  for ((i=0; i<${#s}; i++)); do
    c=${s:i:1}
    case $c in [a-zA-Z0-9._~-]) out+=$c ;; *) out+=$(printf '%%%02X' "'$c") ;; esac
  done
  echo "$out"
}

postgres_env() {
  echo "POSTGRES_HOST=127.0.0.1"
  echo "POSTGRES_PORT=$POSTGRES_PORT"
  echo "POSTGRES_USER=$POSTGRES_TEST_USER"
  echo "POSTGRES_PASSWORD=$POSTGRES_TEST_PASSWORD"
  echo "POSTGRES_DB=$POSTGRES_TEST_DB"
  echo "POSTGRES_URI=postgres://$(postgres_urlencode "$POSTGRES_TEST_USER"):$(postgres_urlencode "$POSTGRES_TEST_PASSWORD")@127.0.0.1:$POSTGRES_PORT/$(postgres_urlencode "$POSTGRES_TEST_DB")"
  echo "POSTGRES_ADMIN_USER=$POSTGRES_ADMIN_USER"
  echo "POSTGRES_ADMIN_PASSWORD=$POSTGRES_ADMIN_PASSWORD"
}
