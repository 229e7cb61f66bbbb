# shellcheck shell=bash
# nginx from Debian's packages: HTTP health endpoints shaped like Graphiti's (`GET /healthcheck`
# answers 200 {"status":"healthy"}), plain on 127.0.0.1:$HTTP_PORT and TLS (the test CA's
# server certificate, lib/testca.sh) on 127.0.0.1:$HTTPS_PORT. Sourced by testenv.sh. Config,
# pid, htpasswd and temp files in $STATE_DIR/nginx; log in $STATE_DIR/nginx.log.
#
#   /healthcheck          200 {"status":"healthy"}
#   /basic/healthcheck    the same behind basic auth ($STATE_DIR/nginx/htpasswd, read per request)
#   /bearer/healthcheck   the same with `Authorization: Bearer $HTTP_TEST_TOKEN`, else 401
#   /unhealthy            200 {"status":"unhealthy"}
#   /status/503, /status/404
#
#   testenv.sh http-password USER PASSWORD   make USER:PASSWORD the only basic-auth login (live)

export HTTP_PORT=${HTTP_PORT:-18080}
export HTTPS_PORT=${HTTPS_PORT:-18443}
# Known test credentials; they exist only inside this throwaway environment.
export HTTP_TEST_USER=${HTTP_TEST_USER:-dbconn}
export HTTP_TEST_PASSWORD=${HTTP_TEST_PASSWORD:-dbconn-http-pw}
export HTTP_TEST_TOKEN=${HTTP_TEST_TOKEN:-dbconn-http-token-4f9c2a}
TESTENV_DATABASES+=(nginx)
TESTENV_FORWARDS+=("nginx-http:$HTTP_PORT" "nginx-https:$HTTPS_PORT")

NGINX_DIR=$STATE_DIR/nginx
# In /usr/sbin, which a non-root PATH may lack.
NGINX_SERVER=/usr/sbin/nginx

nginx_build() {
  [[ -x $NGINX_SERVER ]] && return 0
  log "nginx: installing nginx from Debian"
  testenv_apt_install nginx
}

nginx_running() { pid_alive nginx; }

# nginx_htpasswd USER PASSWORD: replace the file whole (rename), so no request reads half of it.
nginx_htpasswd() {
  [[ $1 != *:* ]] || die "nginx: a basic-auth user name cannot contain ':'"
  mkdir -p "$NGINX_DIR"
  printf '%s:%s\n' "$1" "$(openssl passwd -apr1 -stdin <<<"$2")" >"$NGINX_DIR/htpasswd.tmp"
  mv -f "$NGINX_DIR/htpasswd.tmp" "$NGINX_DIR/htpasswd"
}

nginx_config() {
  local d=$NGINX_DIR user=''
  # The token goes into the config verbatim: keep it to characters that need no quoting.
  [[ $HTTP_TEST_TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "nginx: HTTP_TEST_TOKEN must be token68 characters"
  # Workers of a root master run as `nobody` and could not read the state dir.
  [[ $EUID -eq 0 ]] && user='user root;'
  cat >"$d/nginx.conf" <<EOF
# Written by tests/testenv/services/nginx.sh on every start.
$user
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log stderr notice;
events { worker_connections 512; }
http {
  access_log off;
  server_tokens on;
  default_type application/json;
  client_body_temp_path $d/tmp/client_body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  server {
    listen 127.0.0.1:$HTTP_PORT;
    listen 127.0.0.1:$HTTPS_PORT ssl;
    ssl_certificate $TESTCA_DIR/server.crt;
    ssl_certificate_key $TESTCA_DIR/server.key;
    root $d/www;

    location = /healthcheck { return 200 '{"status":"healthy"}'; }
    location = /unhealthy { return 200 '{"status":"unhealthy"}'; }
    # return runs before auth_basic would (rewrite phase): answer from try_files instead, which
    # runs after the access check.
    location = /basic/healthcheck {
      auth_basic "dbconn testenv";
      auth_basic_user_file $d/htpasswd;
      try_files /nonexistent @healthy;
    }
    location = /bearer/healthcheck {
      if (\$http_authorization != "Bearer $HTTP_TEST_TOKEN") {
        add_header WWW-Authenticate 'Bearer realm="dbconn testenv"' always;
        return 401 '{"status":"unauthorized"}';
      }
      return 200 '{"status":"healthy"}';
    }
    location @healthy { return 200 '{"status":"healthy"}'; }
    location = /status/503 { default_type text/plain; return 503 "service unavailable\n"; }
    location = /status/404 { default_type text/plain; return 404 "not found\n"; }
    # Connection counters (accepts, requests): tests read them to see probes reuse a connection.
    location = /nginx_status { stub_status; }
  }
}
EOF
}

nginx_healthy() {
  [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$HTTP_PORT/healthcheck") == '{"status":"healthy"}' ]] &&
    curl -fsS --max-time 2 --cacert "$TESTCA_DIR/ca.crt" "https://127.0.0.1:$HTTPS_PORT/healthcheck" >/dev/null
}

nginx_start() {
  local p
  if nginx_running; then log "nginx: already running (pid $(<"$STATE_DIR/nginx.pid"))"; return 0; fi
  nginx_build
  for p in "$HTTP_PORT" "$HTTPS_PORT"; do
    port_open "$p" && die "nginx: 127.0.0.1:$p is already in use by another process"
  done
  testca_ensure
  mkdir -p "$NGINX_DIR/tmp" "$NGINX_DIR/www"
  # The test password applies on every start; http-password changes it in between.
  nginx_htpasswd "$HTTP_TEST_USER" "$HTTP_TEST_PASSWORD"
  nginx_config
  log "nginx: starting on 127.0.0.1:$HTTP_PORT and https://127.0.0.1:$HTTPS_PORT (log: $STATE_DIR/nginx.log)"
  # -e: where nginx logs before it has read the config (Debian's default is stderr already).
  testenv_spawn nginx "$NGINX_SERVER" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e stderr
  testenv_wait_up nginx 30 nginx_healthy
}

# TERM is nginx's fast shutdown; the master ends its workers.
nginx_stop() {
  nginx_running && log "nginx: stopping"
  stop_pid nginx
}

# SIGKILL to the whole process group: the master's workers would outlive it and keep the ports.
nginx_kill() {
  nginx_running || return 0
  log "nginx: killing (SIGKILL)"
  kill -9 -- "-$(<"$STATE_DIR/nginx.pid")" 2>/dev/null || true
  kill_pid nginx
}

nginx_env() {
  echo "HTTP_HOST=127.0.0.1"
  echo "HTTP_PORT=$HTTP_PORT"
  echo "HTTPS_PORT=$HTTPS_PORT"
  echo "HTTP_USER=$HTTP_TEST_USER"
  echo "HTTP_PASSWORD=$HTTP_TEST_PASSWORD"
  echo "HTTP_TOKEN=$HTTP_TEST_TOKEN"
}

testenv_cmd_http_password() {
  nginx_htpasswd "${1:?USER}" "${2:?PASSWORD}"
}
