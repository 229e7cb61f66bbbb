# etcd for the test environment: built from tests/testenv/etcd (a pinned wrapper Go module),
# run on 127.0.0.1:$ETCD_PORT with its data under $STATE_DIR. Sourced by testenv.sh after
# common.sh. Also defines the helpers k8s.sh uses (testenv_go_build,
# testenv_wait_up).
#
#   etcd_build     build etcd into $CACHE_DIR/etcd-<version>/ unless it is there; link into $BIN_DIR
#   etcd_start     start etcd (no-op when running) and wait for /health
#   etcd_stop      stop it; the data directory is kept
#   etcd_kill      SIGKILL it, as a crash would
#   etcd_running   true when the etcd process is alive

# Module proxy downloads carry no commit; etcd prints this as its "Git SHA".
ETCD_GIT_SHA=${ETCD_GIT_SHA:-go-module-build}

# testenv_go: the Go command (PATH first, then the usual install location).
testenv_go() {
  local g
  g=$(command -v go 2>/dev/null || true)
  [[ -n $g ]] || g=/usr/local/go/bin/go
  [[ -x $g ]] || die "Go is needed to build the test binaries (not on PATH, not at /usr/local/go/bin/go)"
  echo "$g"
}

# testenv_mod_version MODDIR MODULE: the version MODDIR/go.mod requires of MODULE.
testenv_mod_version() {
  local v
  v=$(awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print ($1 == m ? $2 : $3); exit }' "$1/go.mod")
  [[ -n $v ]] || die "$1/go.mod does not require $2"
  echo "$v"
}

# testenv_go_build OUTDIR MODDIR TAGS LDFLAGS NAME=PACKAGE...
# Builds each PACKAGE of the wrapper module in MODDIR into OUTDIR/NAME. The binaries are
# moved into place only after the whole build succeeded, so an existing OUTDIR/NAME always
# is a complete build. The log goes to OUTDIR/build.log; on failure its tail is printed.
# GOMODCACHE and GOCACHE stay at Go's defaults (outside the repository).
testenv_go_build() {
  local out=$1 moddir=$2 tags=$3 ldflags=$4; shift 4
  local go tmp logf spec start rc=0
  go=$(testenv_go)
  mkdir -p "$out"
  logf=$out/build.log
  rm -rf "$out"/.build.*   # left by an interrupted build
  tmp=$(mktemp -d "$out/.build.XXXXXX")
  start=$SECONDS
  log "building $* (log: $logf)"
  {
    echo "# $(date -u +%FT%TZ) $($go version)"
    for spec in "$@"; do
      local t0=$SECONDS
      echo "# go build -o $tmp/${spec%%=*} ${spec#*=}"
      (cd "$moddir" && env -u GOOS -u GOARCH \
        GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly \
        "$go" build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" \
        -o "$tmp/${spec%%=*}" "${spec#*=}") || { rc=$?; break; }
      echo "# ${spec%%=*} built in $((SECONDS - t0))s"
    done
  } >"$logf" 2>&1 || rc=1
  if ((rc != 0)); then
    rm -rf "$tmp"
    tail -n 40 "$logf" >&2
    die "build failed after $((SECONDS - start))s (full log: $logf)"
  fi
  for spec in "$@"; do mv -f "$tmp/${spec%%=*}" "$out/${spec%%=*}"; done
  rmdir "$tmp"
  log "built ${*%%=*} in $((SECONDS - start))s"
}

# testenv_link DIR NAME...: symlink DIR/NAME into $BIN_DIR.
testenv_link() {
  local dir=$1 n; shift
  mkdir -p "$BIN_DIR"
  for n in "$@"; do ln -sfn "$dir/$n" "$BIN_DIR/$n"; done
}

# testenv_log_tail NAME: the last lines the current run of NAME logged (since its start marker).
testenv_log_tail() {
  awk '/^=== / { n = 0 } { line[n++] = $0 } END { for (i = (n > 30 ? n - 30 : 0); i < n; i++) print line[i] }' \
    "$STATE_DIR/$1.log" >&2
}

# testenv_wait_up NAME SECONDS COMMAND...: poll COMMAND until it succeeds; fail at once
# (with the log's tail) when the process dies, or after SECONDS.
testenv_wait_up() {
  local name=$1 secs=$2 start=$SECONDS; shift 2
  while ((SECONDS - start < secs)); do
    if "$@" >/dev/null 2>&1; then
      log "$name is up (pid $(cat "$STATE_DIR/$name.pid"), $((SECONDS - start))s)"
      return 0
    fi
    if ! pid_alive "$name"; then
      testenv_log_tail "$name"
      rm -f "$STATE_DIR/$name.pid"
      die "$name exited during start-up (log: $STATE_DIR/$name.log)"
    fi
    sleep 0.2
  done
  testenv_log_tail "$name"
  die "$name did not answer within ${secs}s (log: $STATE_DIR/$name.log)"
}

etcd_version() { testenv_mod_version "$TESTENV_DIR/etcd" go.etcd.io/etcd/server/v3; }

etcd_build() {
  local v dir
  v=$(etcd_version)
  dir=$CACHE_DIR/etcd-$v
  if [[ ! -x $dir/etcd ]]; then
    testenv_go_build "$dir" "$TESTENV_DIR/etcd" "" \
      "-X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_GIT_SHA" \
      etcd=go.etcd.io/etcd/server/v3
  fi
  testenv_link "$dir" etcd
}

etcd_running() { pid_alive etcd; }

etcd_healthy() {
  [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health") == *'"health":"true"'* ]]
}

etcd_start() {
  if etcd_running; then
    log "etcd already running (pid $(cat "$STATE_DIR/etcd.pid"))"
    return 0
  fi
  [[ -x $BIN_DIR/etcd ]] || etcd_build
  mkdir -p "$STATE_DIR/etcd-data"
  chmod 700 "$STATE_DIR/etcd-data"
  local client=http://127.0.0.1:$ETCD_PORT peer=http://127.0.0.1:$ETCD_PEER_PORT v unset=()
  # etcd reads every ETCD_* environment variable as a flag (and warns about unknown ones,
  # such as our ETCD_PORT): start it without them.
  for v in $(compgen -e); do
    if [[ $v == ETCD_* ]]; then unset+=(-u "$v"); fi
  done
  testenv_spawn etcd env "${unset[@]}" "$BIN_DIR/etcd" \
    --name=testenv \
    --data-dir="$STATE_DIR/etcd-data" \
    --listen-client-urls="$client" --advertise-client-urls="$client" \
    --listen-peer-urls="$peer" --initial-advertise-peer-urls="$peer" \
    --initial-cluster="testenv=$peer" \
    --unsafe-no-fsync=true \
    --log-level=warn
  testenv_wait_up etcd 60 etcd_healthy
}

etcd_stop() { stop_pid etcd; }
etcd_kill() { kill_pid etcd; }
