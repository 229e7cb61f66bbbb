# shellcheck shell=bash
# A second PostgreSQL cluster, for client-certificate (mTLS) logins, on
# 127.0.0.1:$POSTGRES_MTLS_PORT: TLS with the test CA's server certificate (lib/testca.sh), and
# client certificates verified against the test CA. Sourced by testenv.sh. The same Debian
# binaries as services/postgres.sh (its postgres_bin and pg_as; under root it runs as the
# `postgres` OS user); cluster in $STATE_DIR/pgdata-mtls (kept across stop/start), log in
# $STATE_DIR/postgres-mtls.log, TCP only (no socket).
#
# pg_hba.conf has two lines: POSTGRES_MTLS_USER (dbconn_cert) logs in over TLS with a client
# certificate whose CN is its name (`cert`) and nothing else; the admin logs in with a password
# (scram-sha-256), for set-up. A certificate: `testenv.sh client-cert dbconn_cert OUTDIR`.

# Away from PostgreSQL's default port and below Linux's ephemeral range (32768-60999).
export POSTGRES_MTLS_PORT=${POSTGRES_MTLS_PORT:-15442}
# The certificate login (no password) and its database; they exist only in this throwaway cluster.
export POSTGRES_MTLS_TEST_USER=dbconn_cert
export POSTGRES_MTLS_TEST_DB=dbconn
TESTENV_DATABASES+=(postgres_mtls)
TESTENV_FORWARDS+=("postgres-mtls:$POSTGRES_MTLS_PORT")

POSTGRES_MTLS_DATA=$STATE_DIR/pgdata-mtls
POSTGRES_MTLS_LOG=$STATE_DIR/postgres-mtls.log
# Superuser of this cluster, for set-up (and for tests that need a certificate role of their own).
POSTGRES_MTLS_ADMIN_USER=postgres
POSTGRES_MTLS_ADMIN_PASSWORD=${POSTGRES_MTLS_ADMIN_PASSWORD:-dbconn-mtls-admin-pw}

# The server binaries: those of the cluster's major version once it exists, else the shared server's.
postgres_mtls_bin() {
  if [[ -f $POSTGRES_MTLS_DATA/PG_VERSION ]]; then
    echo "/usr/lib/postgresql/$(<"$POSTGRES_MTLS_DATA/PG_VERSION")/bin"
  else
    postgres_bin
  fi
}

postgres_mtls_build() { postgres_build; }

postgres_mtls_running() {
  [[ -f $POSTGRES_MTLS_DATA/postmaster.pid ]] \
    && pg_as "$(postgres_mtls_bin)/pg_ctl" status -D "$POSTGRES_MTLS_DATA" >/dev/null 2>&1
}

# postgres_mtls_admin [psql args...]: the admin's password login over TCP (TLS, unverified).
postgres_mtls_admin() {
  PGPASSWORD=$POSTGRES_MTLS_ADMIN_PASSWORD PGCONNECT_TIMEOUT=5 "$(postgres_mtls_bin)/psql" -X -q \
    -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$POSTGRES_MTLS_PORT user=$POSTGRES_MTLS_ADMIN_USER dbname=postgres sslmode=require" "$@"
}

# postgres_mtls_cert_login DIR: a certificate login as the test user with DIR/tls.crt and
# DIR/tls.key, verifying the server as a test would.
postgres_mtls_cert_login() {
  PGCONNECT_TIMEOUT=5 "$(postgres_mtls_bin)/psql" -X -q -v ON_ERROR_STOP=1 -At \
    "host=127.0.0.1 port=$POSTGRES_MTLS_PORT user=$POSTGRES_MTLS_TEST_USER dbname=$POSTGRES_MTLS_TEST_DB sslmode=verify-full sslrootcert=$TESTCA_DIR/ca.crt sslcert=$1/tls.crt sslkey=$1/tls.key" \
    -c 'SELECT 1'
}

# A copy of pg-pair's template cluster (services/pgpair.sh: initdb once per STATE_DIR, shared),
# its admin password set in single-user mode; made in a scratch dir and renamed into place, so
# an interrupted run leaves no half cluster.
postgres_mtls_init() {
  local bin=$1 tmp pw=${POSTGRES_MTLS_ADMIN_PASSWORD//\'/\'\'}
  log "postgres_mtls: creating a cluster in $POSTGRES_MTLS_DATA"
  rm -rf "$POSTGRES_MTLS_DATA"
  tmp=$(mktemp -d "$STATE_DIR/.pgdata-mtls.XXXXXX")
  [[ $EUID -eq 0 ]] && chown postgres: "$tmp"
  cp -a "$(_pgpair_template "$bin")" "$tmp/data"
  pg_as "$bin/postgres" --single -D "$tmp/data" postgres >"$tmp/single.log" 2>&1 <<EOF \
    || { cat "$tmp/single.log" >&2; rm -rf "$tmp"; die "postgres_mtls: setting the admin password failed"; }
ALTER ROLE "$POSTGRES_MTLS_ADMIN_USER" PASSWORD '$pw';
EOF
  # Nothing else: no socket (unix_socket_directories is empty), no password login for the
  # certificate role, no plain-TCP login for it either (hostssl).
  pg_as tee "$tmp/data/pg_hba.conf" >/dev/null <<EOF
# testenv postgres_mtls: the certificate login over TLS (CN = user name), the admin by password
hostssl all $POSTGRES_MTLS_TEST_USER 127.0.0.1/32 cert
host    all $POSTGRES_MTLS_ADMIN_USER 127.0.0.1/32 scram-sha-256
EOF
  mv -T "$tmp/data" "$POSTGRES_MTLS_DATA"
  rm -rf "$tmp"
}

# Role and database for the tests; idempotent, run on every start.
postgres_mtls_provision() {
  postgres_mtls_admin -v user="$POSTGRES_MTLS_TEST_USER" -v db="$POSTGRES_MTLS_TEST_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER PASSWORD NULL', :'user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

postgres_mtls_start() {
  local bin d=$POSTGRES_MTLS_DATA owner=() check
  if postgres_mtls_running; then log "postgres_mtls: already running"; return 0; fi
  postgres_mtls_build
  bin=$(postgres_mtls_bin)
  port_open "$POSTGRES_MTLS_PORT" \
    && die "postgres_mtls: 127.0.0.1:$POSTGRES_MTLS_PORT is already in use by another process"
  testca_ensure
  touch "$POSTGRES_MTLS_LOG"
  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$POSTGRES_MTLS_LOG"
    pg_as test -w "$POSTGRES_MTLS_LOG" \
      || die "postgres_mtls: the postgres OS user cannot reach $STATE_DIR (use a DBCONN_TESTENV_STATE it can reach)"
    owner=(-o postgres -g postgres)
  fi
  [[ -f $d/PG_VERSION ]] || { postgres_mtls_init "$bin"; bin=$(postgres_mtls_bin); }
  # The test CA's files, copied on every start (the server reads them as its own OS user, and
  # wants its key private): a CA made anew applies at the next start.
  install "${owner[@]}" -m 644 "$TESTCA_DIR/server.crt" "$d/server.crt"
  install "${owner[@]}" -m 600 "$TESTCA_DIR/server.key" "$d/server.key"
  install "${owner[@]}" -m 644 "$TESTCA_DIR/ca.crt" "$d/ca.crt"
  # Settings that follow the environment are rewritten on every start.
  pg_as tee "$d/testenv.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $POSTGRES_MTLS_PORT
# TCP only: no socket in /var/run/postgresql
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$d/server.crt'
ssl_key_file = '$d/server.key'
# client certificates are verified against the test CA (pg_hba.conf's cert method needs one)
ssl_ca_file = '$d/ca.crt'
max_connections = 100
shared_buffers = 16MB
# a throwaway test cluster: durability traded for speed (a clean stop still writes everything)
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  log "postgres_mtls: starting on 127.0.0.1:$POSTGRES_MTLS_PORT (TLS, client certificates; log: $POSTGRES_MTLS_LOG)"
  if ! pg_as "$bin/pg_ctl" start -D "$d" -l "$POSTGRES_MTLS_LOG" -w -t 60 -s; then
    log "postgres_mtls: last lines of $POSTGRES_MTLS_LOG:"; tail -n 30 "$POSTGRES_MTLS_LOG" >&2
    die "postgres_mtls failed to start"
  fi
  wait_for "postgres_mtls (pg_isready)" 30 "$bin/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_MTLS_PORT" \
    -U "$POSTGRES_MTLS_ADMIN_USER" -d postgres
  postgres_mtls_provision >/dev/null \
    || die "postgres_mtls: creating role $POSTGRES_MTLS_TEST_USER / database $POSTGRES_MTLS_TEST_DB failed"
  # Ready = a certificate login as a test makes it works (a fresh certificate, thrown away).
  check=$(mktemp -d "$STATE_DIR/.postgres-mtls-check.XXXXXX")
  testca_client_cert "$POSTGRES_MTLS_TEST_USER" "$check"
  if ! postgres_mtls_cert_login "$check" >/dev/null 2>"$check/err"; then
    log "postgres_mtls: certificate login as $POSTGRES_MTLS_TEST_USER failed: $(<"$check/err")"
    rm -rf "$check"
    die "postgres_mtls: not ready (log: $POSTGRES_MTLS_LOG)"
  fi
  rm -rf "$check"
  log "postgres_mtls: ready"
}

postgres_mtls_stop() {
  postgres_mtls_running || return 0
  log "postgres_mtls: stopping"
  pg_as "$(postgres_mtls_bin)/pg_ctl" stop -D "$POSTGRES_MTLS_DATA" -m fast -w -t 60 -s
}

# A crash as PostgreSQL knows it: an immediate shutdown (see postgres_kill).
postgres_mtls_kill() {
  postgres_mtls_running || return 0
  log "postgres_mtls: crashing (immediate shutdown)"
  pg_as "$(postgres_mtls_bin)/pg_ctl" stop -D "$POSTGRES_MTLS_DATA" -m immediate -w -t 60 -s
}

postgres_mtls_env() {
  echo "POSTGRES_MTLS_HOST=127.0.0.1"
  echo "POSTGRES_MTLS_PORT=$POSTGRES_MTLS_PORT"
  echo "POSTGRES_MTLS_USER=$POSTGRES_MTLS_TEST_USER"
  echo "POSTGRES_MTLS_DB=$POSTGRES_MTLS_TEST_DB"
  echo "POSTGRES_MTLS_ADMIN_USER=$POSTGRES_MTLS_ADMIN_USER"
  echo "POSTGRES_MTLS_ADMIN_PASSWORD=$POSTGRES_MTLS_ADMIN_PASSWORD"
}
