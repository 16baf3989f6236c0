#!/usr/bin/env bash
# The local stack on loopback: Apache Kafka 4 (KRaft, one combined broker + controller) on 19092,
# Redis (AOF) on 16379, PostgreSQL 15 on 15432. State lives under .stack/ (git-ignored); the
# broker's data is on disk there and survives restarts.
#
# Kafka comes from Maven Central as the pinned artifacts of deploy/local/kafka/pom.xml, copied
# with their dependencies into .stack/kafka/libs; every node (this one, and the test kit's
# private brokers) runs through deploy/local/kafka/node.sh.
#
#   deploy/local/stack.sh up       install what is missing, start what is not running
#   deploy/local/stack.sh status   what runs, and whether this script started it
#   deploy/local/stack.sh down     stop what this script started (nothing else)
#   deploy/local/stack.sh restart-broker   stop and start the broker (its data is kept)
#   deploy/local/stack.sh drop-test-databases   drop the test_* databases tests left behind
#   deploy/local/stack.sh drop-test-keys        delete the Redis keys tests and benches left behind
#   deploy/local/stack.sh drop-test-topics      delete the topics tests and benches left behind
#
# Idempotent: `up` reuses what runs. A process this script did not start is never stopped;
# if one already serves a port, it is used as it is and said so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${MENTORSTREAM_STACK_DIR:-$ROOT/.stack}"
KAFKA_PORT=19092
REDIS_PORT=16379
PG_PORT=15432
KAFKA_CONTROLLER_PORT=19093
KAFKA_DIR="$STATE/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_POM="$ROOT/deploy/local/kafka/pom.xml"
PG_VERSION=15
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
PG_ROLE=mentorstream
PG_DATABASES=(mentorstream mentorstream_mentorship mentorstream_notifier)

log() { printf '[stack] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    ((SECONDS < deadline)) || die "$2 did not open port $1 within $3 s (see $STATE/$2.log)"
    sleep 0.2
  done
}

# A pid file names a process of ours only while that pid runs the expected program.
ours() { # name program
  local pidfile="$STATE/$1.pid" pid
  [[ -f $pidfile ]] || return 1
  pid=$(head -n1 "$pidfile")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  grep -q -- "$2" "/proc/$pid/cmdline" 2>/dev/null
}

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

apt_install() {
  [[ $(id -u) -eq 0 ]] || die "$* is missing; install it (apt-get install $*) or run as root"
  if [[ ! -f "$STATE/.apt-updated" ]]; then
    log "apt-get update"
    apt-get update -qq >/dev/null
    touch "$STATE/.apt-updated"
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The broker's jars, fetched again only when the pom changes.
install_kafka() {
  local want
  want=$(sha1sum "$KAFKA_POM" | cut -c1-40)
  [[ $(cat "$KAFKA_LIBS/.complete" 2>/dev/null) == "$want" ]] && return
  log "kafka: fetching the pinned artifacts of $KAFKA_POM (once)"
  rm -rf "$KAFKA_LIBS.tmp" && mkdir -p "$KAFKA_DIR"
  mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$KAFKA_LIBS.tmp" >"$KAFKA_DIR/install.log" 2>&1 \
    || die "fetching Kafka failed: see $KAFKA_DIR/install.log"
  echo "$want" >"$KAFKA_LIBS.tmp/.complete"
  rm -rf "$KAFKA_LIBS" && mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
}

install_missing() {
  mkdir -p "$STATE"
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server redis-tools
  [[ -x "$PG_BIN/initdb" ]] || apt_install "postgresql-$PG_VERSION"
  command -v psql >/dev/null || apt_install "postgresql-client-$PG_VERSION"
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  install_kafka
}

# Where PostgreSQL keeps its data and socket: .stack/postgres, unless the postgres user cannot
# reach it (a checkout under a private directory), then a folder of the postgres user, named
# after this checkout and recorded in .stack/postgres.home.
pg_home() {
  local recorded="$STATE/postgres.home" home
  if [[ -f $recorded ]]; then cat "$recorded"; return; fi
  home="$STATE/postgres"
  install -d -m 0755 "$home"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres:postgres "$home"
    if ! runuser -u postgres -- test -w "$home"; then
      home="/var/lib/postgresql/mentorstream-stack/$(printf %s "$ROOT" | sha1sum | cut -c1-12)"
      install -d -m 0755 -o postgres -g postgres "$(dirname "$home")" "$home"
      log "postgres: $STATE is not reachable by the postgres user; data in $home"
    fi
  fi
  echo "$home" >"$recorded"
  echo "$home"
}

start_postgres() {
  local home data sock
  home=$(pg_home)
  data="$home/data"
  sock="$home"
  if ours postgres postgres; then
    log "postgres: running (ours) on $PG_PORT"
  elif port_open $PG_PORT; then
    log "postgres: port $PG_PORT is served by a process this script did not start; using it"
    return
  else
    if [[ ! -f $data/PG_VERSION ]]; then
      log "postgres: initdb"
      as_postgres "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$STATE/postgres-initdb.log" 2>&1 \
        || die "initdb failed: see $STATE/postgres-initdb.log"
    fi
    log "postgres: starting on $PG_PORT"
    as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$home/server.log" -w -t 60 \
      -o "-p $PG_PORT -k $sock -c listen_addresses=127.0.0.1 -c max_connections=300" \
      start >/dev/null || die "postgres did not start: see $home/server.log"
    head -n1 "$data/postmaster.pid" >"$STATE/postgres.pid"
  fi
  local psql=(psql -h "$sock" -p $PG_PORT -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [[ -z $("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'") ]]; then
    "${psql[@]}" -c "CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_ROLE'" >/dev/null
  fi
  for db in "${PG_DATABASES[@]}"; do
    if [[ -z $("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
      "${psql[@]}" -c "CREATE DATABASE $db OWNER $PG_ROLE" >/dev/null
    fi
  done
}

start_redis() {
  if ours redis redis-server; then
    log "redis: running (ours) on $REDIS_PORT"
  elif port_open $REDIS_PORT; then
    log "redis: port $REDIS_PORT is served by a process this script did not start; using it"
  else
    mkdir -p "$STATE/redis"
    log "redis: starting on $REDIS_PORT (AOF on)"
    redis-server --bind 127.0.0.1 --port $REDIS_PORT --dir "$STATE/redis" \
      --appendonly yes --appendfsync everysec --save "" --daemonize yes \
      --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --protected-mode yes
    wait_port $REDIS_PORT redis 30
  fi
}

# One node, broker and controller in one JVM (heap 512 MiB), formatted on its first start.
start_kafka() {
  if ours kafka kafka.Kafka; then
    log "kafka: running (ours) on $KAFKA_PORT"
  elif port_open $KAFKA_PORT; then
    log "kafka: port $KAFKA_PORT is served by a process this script did not start; using it"
  else
    local node="$KAFKA_DIR/node"
    mkdir -p "$node"
    [[ -f $node/cluster.id ]] || java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid \
      >"$node/cluster.id"
    cat >"$node/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$node/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
PROPERTIES
    log "kafka: starting on $KAFKA_PORT (data in $node/data)"
    setsid "$ROOT/deploy/local/kafka/node.sh" "$node" >>"$node/stdout.log" 2>&1 </dev/null &
    echo $! >"$STATE/kafka.pid"
    wait_port $KAFKA_PORT kafka/node/server 90
  fi
}

stop() { # name program
  if ours "$1" "$2"; then
    local pid
    pid=$(head -n1 "$STATE/$1.pid")
    log "$1: stopping (pid $pid)"
    if [[ $1 == postgres ]]; then
      as_postgres "$PG_BIN/pg_ctl" -D "$(pg_home)/data" -m fast -w stop >/dev/null
    else
      kill "$pid"
      for _ in $(seq 300); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
      if [[ -d /proc/$pid ]]; then
        # A process that ignores SIGTERM: a second copy must never start beside it.
        log "$1: did not stop within 30 s; killing it"
        kill -9 "$pid"
        for _ in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
      fi
    fi
    rm -f "$STATE/$1.pid"
  else
    log "$1: not running from this stack"
  fi
}

status() {
  local rc=0
  for entry in "kafka kafka.Kafka $KAFKA_PORT" "redis redis-server $REDIS_PORT" "postgres postgres $PG_PORT"; do
    read -r name program port <<<"$entry"
    if ours "$name" "$program"; then
      echo "$name: running (pid $(head -n1 "$STATE/$name.pid"), port $port)"
    elif port_open "$port"; then
      echo "$name: port $port served by a process this script did not start"
    else
      echo "$name: stopped"; rc=1
    fi
  done
  return $rc
}

case "${1:-}" in
  up)
    install_missing
    start_postgres
    start_redis
    start_kafka
    log "up: kafka 127.0.0.1:$KAFKA_PORT, redis 127.0.0.1:$REDIS_PORT, postgres 127.0.0.1:$PG_PORT"
    ;;
  down)
    stop kafka kafka.Kafka
    stop redis redis-server
    stop postgres postgres
    ;;
  restart-broker)
    stop kafka kafka.Kafka
    start_kafka
    ;;
  drop-test-databases)
    sock=$(pg_home)
    for db in $(psql -h "$sock" -p $PG_PORT -U postgres -qtA \
        -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'"); do
      psql -h "$sock" -p $PG_PORT -U postgres -q -c "DROP DATABASE \"$db\" WITH (FORCE)"
    done
    ;;
  drop-test-keys)
    # Tests and benches use key prefixes of their own (`{` opens a cluster hash tag). Left
    # behind, they make the shared Redis grow without bound, and a test's KEYS scans all of it.
    # One SCAN pass in large steps (redis-cli's --scan takes steps of 10).
    cursor=0
    while :; do
      reply=$(redis-cli -p $REDIS_PORT --raw scan "$cursor" count 10000)
      cursor=${reply%%$'\n'*}
      { tail -n +2 <<<"$reply" | grep -E '^\{?(ms-test|e2e|bench|peer)-' || true; } \
        | xargs -r -d '\n' -n 1000 redis-cli -p $REDIS_PORT unlink >/dev/null
      [[ $cursor == 0 ]] && break
    done
    ;;
  drop-test-topics)
    # Tests and benches name their topics t.*, e2e.*, bench* and peer* (crates/testkit unique);
    # on disk they would pile up run after run.
    port_open $KAFKA_PORT || exit 0
    java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
      -Dkafka.logs.dir="$KAFKA_DIR" org.apache.kafka.tools.TopicCommand \
      --bootstrap-server 127.0.0.1:$KAFKA_PORT --delete --if-exists \
      --topic '(t|e2e)\..*|(bench|peer).*' >/dev/null
    ;;
  status) status ;;
  *) echo "usage: $0 up|status|down|restart-broker|drop-test-databases|drop-test-keys|drop-test-topics" >&2; exit 2 ;;
esac
