# Helpers shared by the service scripts. Sourced by testenv.sh.

log() { printf '[testenv] %s\n' "$*" >&2; }
die() { printf '[testenv] error: %s\n' "$*" >&2; exit 1; }

# pid_alive NAME: true when STATE_DIR/NAME.pid names a live process.
pid_alive() {
  local f=$STATE_DIR/$1.pid
  [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# stop_pid NAME [SIGNAL]: SIGNAL (TERM by default) to the process, wait up to 30 s, then KILL.
stop_pid() {
  local f=$STATE_DIR/$1.pid sig=${2:-TERM} pid i
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i=0; i<300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# kill_pid NAME: SIGKILL the process, as a crash would, and wait until it is gone.
kill_pid() {
  local f=$STATE_DIR/$1.pid pid i
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  kill -9 "$pid" 2>/dev/null || true
  for ((i=0; i<100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$f"
}

# port_open PORT: true when something listens on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local what=$1 secs=$2 i; shift 2
  for ((i=0; i<secs*5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what did not answer within ${secs}s (logs in $STATE_DIR)"
}

# detached COMMAND...: replace the current (sub)shell with COMMAND, minus the file descriptors
# inherited beyond 0-2; call it in a subshell or with &. A server keeps what it was started with
# for as long as it runs: a lock its starter held through an inherited descriptor (e.g.
# `flock LOCK cargo test`, whose fault tests restart services) would stay locked until then.
detached() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  # No redirection on the loop: bash would park the caller's stderr on a descriptor above 9
  # for the loop's duration, the loop would close that copy, and stderr would stay /dev/null.
  # [[ -e ]] skips the descriptor the glob itself had open.
  exec bash -c 'for f in /proc/$$/fd/*; do n=${f##*/}; if ((n > 2)) && [[ -e $f ]]; then eval "exec $n>&-"; fi; done; exec "$@"' detached "$@"
}

# testenv_spawn NAME COMMAND...: run COMMAND in the background in its own session (so a
# Ctrl-C in the caller's terminal does not reach it), log appended to $STATE_DIR/NAME.log,
# pid in $STATE_DIR/NAME.pid.
testenv_spawn() {
  local name=$1 i; shift
  local pidf=$STATE_DIR/$name.pid logf=$STATE_DIR/$name.log
  rm -f "$pidf"
  echo "=== $(date -u +%FT%TZ) starting: $*" >>"$logf"
  # The child writes its own pid: setsid may fork, so $! would not be the server's pid.
  # shellcheck disable=SC2016 # expanded by the inner bash
  detached setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "$@" \
    >>"$logf" 2>&1 </dev/null &
  for ((i = 0; i < 100; i++)); do
    if [[ -s $pidf ]]; then return 0; fi
    sleep 0.05
  done
  die "$name did not start (log: $logf)"
}

# testenv_apt_install PACKAGE...: install Debian packages (as root) without starting the
# services they ship: we run our own servers on our own ports, and a system one would hold the
# default port and outlive the environment. A policy-rc.d already in place (Docker images have
# one) is put back afterwards.
testenv_apt_install() {
  local policy=/usr/sbin/policy-rc.d saved='' rc=0
  [[ $EUID -eq 0 ]] || die "installing $* needs root (sudo apt-get install -y $*)"
  if [[ -e $policy ]]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
  printf '#!/bin/sh\n# dbconn testenv: no service starts while it installs packages\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
    >"$CACHE_DIR/apt-install.log" 2>&1 || rc=$?
  if [[ -n $saved ]]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
  ((rc == 0)) || { tail -n 20 "$CACHE_DIR/apt-install.log" >&2; die "apt-get install $* failed (log: $CACHE_DIR/apt-install.log)"; }
}
