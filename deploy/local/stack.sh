#!/usr/bin/env bash
# The local stack on loopback: Tansu (Kafka API) on 19092, Redis (AOF) on 16379, PostgreSQL 15
# on 15432. State lives under .stack/ (git-ignored).
#
# Tansu keeps its data in memory by default: its SQLite engine is durable but fetches a few
# hundred records per second once a partition holds some thousands (measured: 20,000 records
# took 91 s to consume, against 1 s from memory), which the aggregator, the tests and the demo
# cannot live with. Tests of broker crashes run a private SQLite broker of their own
# (mentorstream_testkit::PrivateBroker). MENTORSTREAM_TANSU_STORAGE=sqlite://tansu.db selects
# durable storage here (relative to .stack/tansu).
#
#   deploy/local/stack.sh up       install what is missing, start what is not running
#   deploy/local/stack.sh status   what runs, and whether this script started it
#   deploy/local/stack.sh down     stop what this script started (nothing else)
#   deploy/local/stack.sh restart-broker   stop and start the broker (in-memory data is lost)
#   deploy/local/stack.sh drop-test-databases   drop the test_* databases tests left behind
#   deploy/local/stack.sh drop-test-keys        delete the Redis keys tests and benches left behind
#
# Idempotent: `up` reuses what runs. A process this script did not start is never stopped;
# if one already serves a port, it is used as it is and said so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${MENTORSTREAM_STACK_DIR:-$ROOT/.stack}"
KAFKA_PORT=19092
REDIS_PORT=16379
PG_PORT=15432
TANSU_VERSION=0.6.0
TANSU_STORAGE="${MENTORSTREAM_TANSU_STORAGE:-memory://tansu/}"
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

tansu_bin() {
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    command -v tansu
  elif [[ -x "$HOME/.cargo/bin/tansu" ]]; then
    echo "$HOME/.cargo/bin/tansu"
  else
    return 1
  fi
}

install_missing() {
  mkdir -p "$STATE"
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server redis-tools
  [[ -x "$PG_BIN/initdb" ]] || apt_install "postgresql-$PG_VERSION"
  command -v psql >/dev/null || apt_install "postgresql-client-$PG_VERSION"
  if ! tansu_bin >/dev/null; then
    log "installing tansu $TANSU_VERSION with cargo (about 11 minutes on 2 cores, once)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql \
      >"$STATE/tansu-install.log" 2>&1 || die "cargo install tansu failed: see $STATE/tansu-install.log"
  fi
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

start_tansu() {
  if ours tansu tansu; then
    log "tansu: running (ours) on $KAFKA_PORT"
  elif port_open $KAFKA_PORT; then
    log "tansu: port $KAFKA_PORT is served by a process this script did not start; using it"
  else
    local bin
    bin=$(tansu_bin) || die "tansu is not installed"
    mkdir -p "$STATE/tansu"
    log "tansu: starting on $KAFKA_PORT (storage $TANSU_STORAGE)"
    # A SQLite path is relative to the working directory: keep it in the state folder.
    (cd "$STATE/tansu" && exec setsid "$bin" broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine "$TANSU_STORAGE" >>"$STATE/tansu.log" 2>&1 </dev/null) &
    echo $! >"$STATE/tansu.pid"
    wait_port $KAFKA_PORT tansu 60
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
      for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
      if [[ -d /proc/$pid ]]; then
        # A busy Tansu can ignore SIGTERM; a second copy must never start beside it.
        log "$1: did not stop within 10 s; killing it"
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
  for entry in "tansu tansu $KAFKA_PORT" "redis redis-server $REDIS_PORT" "postgres postgres $PG_PORT"; do
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
    start_tansu
    log "up: kafka 127.0.0.1:$KAFKA_PORT, redis 127.0.0.1:$REDIS_PORT, postgres 127.0.0.1:$PG_PORT"
    ;;
  down)
    stop tansu tansu
    stop redis redis-server
    stop postgres postgres
    ;;
  restart-broker)
    stop tansu tansu
    start_tansu
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
  status) status ;;
  *) echo "usage: $0 up|status|down|restart-broker|drop-test-databases|drop-test-keys" >&2; exit 2 ;;
esac
