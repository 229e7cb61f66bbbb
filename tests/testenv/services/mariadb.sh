# shellcheck shell=bash
# MariaDB from Debian's packages on 127.0.0.1:$MARIADB_PORT, plain and TLS on the same port (the
# test CA's server certificate, lib/testca.sh; client certificates are verified against the test
# CA). Sourced by testenv.sh. Data in $STATE_DIR/mariadb/data (kept across stop/start), socket
# $STATE_DIR/mariadb/mariadb.sock, log in $STATE_DIR/mariadb.log. Under root the server runs as
# Debian's `mysql` OS user.
#
# Admin: over the socket, the OS user who runs this script logs in as itself without a password
# (unix_socket, set up by mariadb-install-db); MARIADB_ADMIN_USER (root) also takes
# MARIADB_ADMIN_PASSWORD there, for tests that connect to the socket themselves.
#
# MARIADB_X509_USER (from 127.0.0.1, SELECT on the test database) logs in only over TLS with a
# client certificate the test CA signed (REQUIRE X509) and its password: a certificate from
# `testenv.sh client-cert ANY_CN OUTDIR` (the CN is not checked).
#
#   testenv.sh mariadb-sql SQL   run SQL as the admin; result rows tab-separated, no header

# Away from MariaDB's default port, so a developer's own server is never touched.
export MARIADB_PORT=${MARIADB_PORT:-13306}
# Known test credentials; they exist only inside this throwaway environment.
export MARIADB_TEST_USER=dbconn
export MARIADB_TEST_PASSWORD=${MARIADB_TEST_PASSWORD:-dbconn-mariadb-pw}
export MARIADB_TEST_DB=dbconn
export MARIADB_ADMIN_USER=root
export MARIADB_ADMIN_PASSWORD=${MARIADB_ADMIN_PASSWORD:-dbconn-mariadb-admin-pw}
export MARIADB_X509_TEST_USER=dbconn_x509
export MARIADB_X509_TEST_PASSWORD=${MARIADB_X509_TEST_PASSWORD:-dbconn-mariadb-x509-pw}
TESTENV_DATABASES+=(mariadb)
TESTENV_FORWARDS+=("mariadb:$MARIADB_PORT")

MARIADB_DIR=$STATE_DIR/mariadb
MARIADB_DATA=$MARIADB_DIR/data
MARIADB_SOCKET=$MARIADB_DIR/mariadb.sock
# In /usr/sbin, which a non-root PATH may lack.
MARIADB_SERVER=/usr/sbin/mariadbd

mariadb_build() {
  [[ -x $MARIADB_SERVER ]] && return 0
  log "mariadb: installing MariaDB from Debian"
  testenv_apt_install mariadb-server
}

mariadb_running() { pid_alive mariadb; }

# SQL literal: MariaDB reads backslash escapes inside quotes, so double those as well as quotes.
mariadb_literal() {
  local s=${1//\\/\\\\}
  printf "'%s'" "${s//\'/\'\'}"
}

# mariadb_admin_sql SQL: as the admin over the socket; rows tab-separated, no header.
mariadb_admin_sql() {
  mariadb --no-defaults --socket="$MARIADB_SOCKET" --user="$(id -un)" \
    --connect-timeout=5 --batch --skip-column-names -e "$1"
}

# mariadb_tcp USER PASSWORD DB [client args...]: a password login over TCP.
mariadb_tcp() {
  local user=$1 pw=$2 db=$3; shift 3
  MYSQL_PWD=$pw mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MARIADB_PORT" \
    --connect-timeout=5 -u "$user" "$db" "$@"
}

mariadb_init() {
  local as=(--auth-root-socket-user="$(id -un)")
  log "mariadb: creating a data directory in $MARIADB_DATA"
  rm -rf "$MARIADB_DATA"
  [[ $EUID -eq 0 ]] && as=(--user=mysql)
  mariadb-install-db --no-defaults --datadir="$MARIADB_DATA" "${as[@]}" --skip-test-db \
    --skip-name-resolve >"$STATE_DIR/mariadb-install-db.log" 2>&1 \
    || { tail -n 30 "$STATE_DIR/mariadb-install-db.log" >&2; die "mariadb: mariadb-install-db failed"; }
}

# User and database for the tests, and the admin password; idempotent, run on every start (so a
# changed password applies).
mariadb_provision() {
  local user pw db admin x509 x509_pw
  user="$(mariadb_literal "$MARIADB_TEST_USER")@'127.0.0.1'"
  pw=$(mariadb_literal "$MARIADB_TEST_PASSWORD")
  x509="$(mariadb_literal "$MARIADB_X509_TEST_USER")@'127.0.0.1'"
  x509_pw=$(mariadb_literal "$MARIADB_X509_TEST_PASSWORD")
  db="\`${MARIADB_TEST_DB//\`/\`\`}\`"
  admin="$(mariadb_literal "$MARIADB_ADMIN_USER")@'localhost'"
  mariadb_admin_sql "
    CREATE DATABASE IF NOT EXISTS $db;
    CREATE USER IF NOT EXISTS $user;
    ALTER USER $user IDENTIFIED BY $pw;
    GRANT ALL ON $db.* TO $user;
    CREATE USER IF NOT EXISTS $x509;
    ALTER USER $x509 IDENTIFIED BY $x509_pw REQUIRE X509;
    GRANT SELECT ON $db.* TO $x509;
    ALTER USER $admin IDENTIFIED VIA unix_socket
      OR mysql_native_password USING PASSWORD($(mariadb_literal "$MARIADB_ADMIN_PASSWORD"));"
}

mariadb_start() {
  local server=()
  if mariadb_running; then log "mariadb: already running (pid $(<"$STATE_DIR/mariadb.pid"))"; return 0; fi
  mariadb_build
  port_open "$MARIADB_PORT" && die "mariadb: 127.0.0.1:$MARIADB_PORT is already in use by another process"
  testca_ensure
  mkdir -p "$MARIADB_DIR/tmp"
  # The server reads its key after it dropped root: a copy it owns.
  install -m 600 "$TESTCA_DIR/server.key" "$MARIADB_DIR/server.key"
  if [[ $EUID -eq 0 ]]; then
    chown -R mysql: "$MARIADB_DIR"
    runuser -u mysql -- test -w "$MARIADB_DIR" \
      || die "mariadb: the mysql OS user cannot reach $STATE_DIR (use a DBCONN_TESTENV_STATE it can reach)"
    server=(--user=mysql)
  fi
  [[ -d $MARIADB_DATA/mysql ]] || mariadb_init
  log "mariadb: starting on 127.0.0.1:$MARIADB_PORT (log: $STATE_DIR/mariadb.log)"
  # --no-defaults: nothing from /etc/mysql (its socket, port, datadir) applies to this server.
  # utf8mb4 as Debian's own configuration has it; small buffers and no fsync: a throwaway server.
  # Each commit still reaches the kernel (trx-commit=2), so a SIGKILL loses no committed row.
  # --ssl-ca is also what client certificates are verified against (the REQUIRE X509 user).
  testenv_spawn mariadb "$MARIADB_SERVER" --no-defaults "${server[@]}" \
    --datadir="$MARIADB_DATA" --tmpdir="$MARIADB_DIR/tmp" \
    --pid-file="$MARIADB_DIR/mariadbd.pid" --socket="$MARIADB_SOCKET" \
    --bind-address=127.0.0.1 --port="$MARIADB_PORT" \
    --skip-name-resolve --max-connections=300 \
    --ssl-ca="$TESTCA_DIR/ca.crt" --ssl-cert="$TESTCA_DIR/server.crt" --ssl-key="$MARIADB_DIR/server.key" \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --innodb-log-buffer-size=4M \
    --key-buffer-size=4M --aria-pagecache-buffer-size=8M \
    --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 --innodb-flush-method=nosync
  testenv_wait_up mariadb 60 mariadb_admin_sql 'SELECT 1'
  mariadb_provision || die "mariadb: creating user $MARIADB_TEST_USER / database $MARIADB_TEST_DB failed"
  wait_for "mariadb password login as $MARIADB_TEST_USER" 30 \
    mariadb_tcp "$MARIADB_TEST_USER" "$MARIADB_TEST_PASSWORD" "$MARIADB_TEST_DB" -e 'SELECT 1'
  log "mariadb: ready"
}

# TERM is mariadbd's clean shutdown (stop_pid waits for it, up to 30 s).
mariadb_stop() {
  mariadb_running && log "mariadb: stopping"
  stop_pid mariadb
}

# SIGKILL: no clean shutdown, the next start runs InnoDB crash recovery.
mariadb_kill() {
  mariadb_running && log "mariadb: killing (SIGKILL)"
  kill_pid mariadb
}

mariadb_env() {
  echo "MARIADB_HOST=127.0.0.1"
  echo "MARIADB_PORT=$MARIADB_PORT"
  echo "MARIADB_USER=$MARIADB_TEST_USER"
  echo "MARIADB_PASSWORD=$MARIADB_TEST_PASSWORD"
  echo "MARIADB_DB=$MARIADB_TEST_DB"
  echo "MARIADB_ADMIN_USER=$MARIADB_ADMIN_USER"
  echo "MARIADB_ADMIN_PASSWORD=$MARIADB_ADMIN_PASSWORD"
  echo "MARIADB_SOCKET=$MARIADB_SOCKET"
  echo "MARIADB_X509_USER=$MARIADB_X509_TEST_USER"
  echo "MARIADB_X509_PASSWORD=$MARIADB_X509_TEST_PASSWORD"
}

testenv_cmd_mariadb_sql() {
  mariadb_running || die "mariadb is not running (testenv.sh start mariadb)"
  mariadb_admin_sql "${1:?SQL}"
}
