# Embedded Neo4j 5 Community (tests/testenv/neo4j) on 127.0.0.1:$NEO4J_BOLT_PORT. Sourced by testenv.sh.
# Built with Maven into $CACHE_DIR/neo4j-<version>/ (rebuilt only when the pom or launcher change);
# data in $STATE_DIR/neo4j-data survives stop/start; log in $STATE_DIR/neo4j.log.

# Away from Neo4j's default port, so a developer's own Neo4j is never touched.
export NEO4J_BOLT_PORT=${NEO4J_BOLT_PORT:-17687}
# Known test credentials; they exist only inside this throwaway environment.
export NEO4J_TEST_USER=neo4j
export NEO4J_TEST_PASSWORD=${NEO4J_TEST_PASSWORD:-dbconn-test-pw}
TESTENV_DATABASES+=(neo4j)
TESTENV_FORWARDS+=("neo4j:$NEO4J_BOLT_PORT")

NEO4J_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../neo4j" && pwd)
NEO4J_VERSION=$(sed -n 's:.*<neo4j.version>\(.*\)</neo4j.version>.*:\1:p' "$NEO4J_SRC/pom.xml")
NEO4J_HOME=$CACHE_DIR/neo4j-$NEO4J_VERSION
NEO4J_JAVA_OPTS=(
  -Xms512m -Xmx1g -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow -XX:+ExitOnOutOfMemoryError
  # C1 only: start-up in about half the time and CPU on 2 shared cores; plenty fast for tests.
  -XX:TieredStopAtLevel=1
  # as upstream's neo4j.conf (server.jvm.additional)
  --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true -Djdk.nio.maxCachedBufferSize=1024 -Dlog4j2.disable.jmx=true
)

neo4j_java() { echo "${JAVA_HOME:+$JAVA_HOME/bin/}java"; }

# Cache key: the pom and the launcher source.
neo4j_src_hash() {
  cat "$NEO4J_SRC/pom.xml" "$NEO4J_SRC"/src/main/java/testenv/*.java | sha256sum | cut -c1-16
}

neo4j_build() {
  local hash
  hash=$(neo4j_src_hash)
  [[ -f $NEO4J_HOME/.built && $(<"$NEO4J_HOME/.built") == "$hash" ]] && return 0
  if ! command -v mvn >/dev/null || ! command -v "$(neo4j_java)" >/dev/null; then
    [[ $EUID -eq 0 ]] || die "neo4j: needs Java 17+ and Maven (apt-get install -y openjdk-17-jdk-headless maven)"
    log "neo4j: installing Java 17 and Maven from Debian"
    apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null \
      || die "neo4j: apt-get install openjdk-17-jdk-headless maven failed"
  fi
  log "neo4j: building embedded Neo4j $NEO4J_VERSION into $NEO4J_HOME (Maven repo: ~/.m2)"
  rm -rf "$NEO4J_HOME.tmp"
  if ! (cd "$NEO4J_SRC" && mvn -q -B -Dstyle.color=never -Dout.dir="$NEO4J_HOME.tmp" \
        compile dependency:copy-dependencies) >"$CACHE_DIR/neo4j-build.log" 2>&1; then
    tail -n 40 "$CACHE_DIR/neo4j-build.log" >&2
    die "neo4j: maven build failed (log: $CACHE_DIR/neo4j-build.log)"
  fi
  rm -rf "$NEO4J_HOME.tmp"/{maven-status,generated-sources}
  echo "$hash" > "$NEO4J_HOME.tmp/.built"
  rm -rf "$NEO4J_HOME" && mv "$NEO4J_HOME.tmp" "$NEO4J_HOME"
}

neo4j_running() { pid_alive neo4j; }


neo4j_start() {
  local pid i log=$STATE_DIR/neo4j.log
  if neo4j_running; then log "neo4j: already running (pid $(<"$STATE_DIR/neo4j.pid"))"; return 0; fi
  neo4j_build
  (( ${#NEO4J_TEST_PASSWORD} >= 8 )) || die "neo4j: NEO4J_TEST_PASSWORD must have at least 8 characters"
  port_open "$NEO4J_BOLT_PORT" && die "neo4j: 127.0.0.1:$NEO4J_BOLT_PORT is already in use by another process"
  mkdir -p "$STATE_DIR/neo4j-data"; : > "$log"
  log "neo4j: starting $NEO4J_VERSION on bolt://127.0.0.1:$NEO4J_BOLT_PORT (log: $log)"
  # The password goes in as an argument: visible in ps, acceptable for a throwaway local test database.
  # In a session of its own, so it outlives the shell (and process group) that started it.
  testenv_spawn neo4j "$(neo4j_java)" "${NEO4J_JAVA_OPTS[@]}" -cp "$NEO4J_HOME/classes:$NEO4J_HOME/lib/*" \
    testenv.Neo4jLauncher "$STATE_DIR/neo4j-data" "$NEO4J_BOLT_PORT" "$NEO4J_TEST_PASSWORD"
  pid=$(<"$STATE_DIR/neo4j.pid")
  # Ready = the launcher logged a successful Bolt login, and the port answers.
  for ((i=0; i<180*5; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$STATE_DIR/neo4j.pid"
      log "neo4j: exited during start-up; last lines of $log:"; tail -n 40 "$log" >&2
      die "neo4j failed to start (Neo4j's own log: $STATE_DIR/neo4j-data/logs/debug.log)"
    fi
    grep -q '^testenv: neo4j ready' "$log" && port_open "$NEO4J_BOLT_PORT" && { log "neo4j: ready (pid $pid)"; return 0; }
    sleep 0.2
  done
  log "neo4j: not ready after 180s; last lines of $log:"; tail -n 40 "$log" >&2
  neo4j_stop
  die "neo4j did not become ready (Neo4j's own log: $STATE_DIR/neo4j-data/logs/debug.log)"
}

neo4j_stop() {
  neo4j_running && log "neo4j: stopping"
  stop_pid neo4j
}

# SIGKILL: no clean shutdown, the next start recovers the store from its transaction log.
neo4j_kill() {
  neo4j_running && log "neo4j: killing (SIGKILL)"
  kill_pid neo4j
}

neo4j_env() {
  echo "NEO4J_URI=bolt://127.0.0.1:$NEO4J_BOLT_PORT"
  echo "NEO4J_USER=$NEO4J_TEST_USER"
  echo "NEO4J_PASSWORD=$NEO4J_TEST_PASSWORD"
}
