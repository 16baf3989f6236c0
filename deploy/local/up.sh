#!/usr/bin/env bash
# `make up`: every service in the background against the local stack, with a tenant `readme`
# and a fresh API key of every scope in .stack/demo/api-key, so the README's examples run
# as written. `make down` (this script with --down) stops them.
set -euo pipefail

state=.stack/demo
pidfile=$state/up.pid
mkdir -p "$state"

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [[ ${1:-} == --down ]]; then
  if running; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    echo "services stopped"
  else
    echo "services were not running (make up starts them)"
  fi
  rm -f "$pidfile"
  exit 0
fi

bin=${1:-target/debug/mentorstream}
field() { grep -o "\"$1\":\"[^\"]*\"" | cut -d'"' -f4; }
if running; then
  echo "services already up (pid $(cat "$pidfile"), log $state/up.log)"
else
  "$bin" admin migrate
  # The tenant stays from one `make up` to the next; only the key is new.
  "$bin" admin create-tenant --name readme --timezone Europe/Moscow --locale en-US --json \
    >/dev/null 2>&1 || true
  key=$("$bin" admin create-key --tenant readme --scopes ingest,read,write,admin --json | field api_key)
  (umask 077 && echo "$key" >"$state/api-key")
# Chat-bot buttons need a signing key shared by the notifier and mentorship (no default:
# a known one would let anyone forge them); one per machine, kept with the demo state.
[ -s "$state/action-signing-key" ] || (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$state/action-signing-key")
export MENTORSTREAM__ACTIONS__SIGNING_KEY=$(cat "$state/action-signing-key")
  nohup "$bin" up >"$state/up.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    running || { echo "mentorstream up stopped:"; tail -20 "$state/up.log"; exit 1; }
    "$bin" kpi scorecard --api-key "$key" --subject tenant >/dev/null 2>&1 && break
    sleep 0.5
  done
  echo "services up (pid $(cat "$pidfile"), log $state/up.log): ingest 50051, mentorship 50052, kpi 50053, notifier 50054"
fi
echo "export MENTORSTREAM_API_KEY=\$(cat $state/api-key)   # tenant readme, every scope"
