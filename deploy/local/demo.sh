#!/usr/bin/env bash
# `make demo`: a fresh demo tenant, every service (`mentorstream up`), a simulated company's
# last four weeks streamed through the APIs, and live KPIs in the terminal until Ctrl-C; then
# what the pilot programme changed (ImpactService.ComparePrograms).
# Expects the local stack up (make stack-up) and the binary built.
set -euo pipefail

bin=${1:-target/debug/mentorstream}
partners=${DEMO_PARTNERS:-400}
state=.stack/demo
mkdir -p "$state"

field() { grep -o "\"$1\":\"[^\"]*\"" | cut -d'"' -f4; }

"$bin" admin migrate
name="demo-$(date +%Y%m%d-%H%M%S)"
tenant_id=$("$bin" admin create-tenant --name "$name" --timezone Europe/Moscow --locale ru-RU --json | field tenant_id)
key=$("$bin" admin create-key --tenant "$tenant_id" --scopes ingest,read,write --json | field api_key)
umask 077
echo "$key" > "$state/api-key"
echo "demo tenant $name ($tenant_id); its API key is in $state/api-key"

# Chat-bot buttons need a signing key shared by the notifier and mentorship (no default:
# a known one would let anyone forge them); one per machine, kept with the demo state.
[ -s "$state/action-signing-key" ] || (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$state/action-signing-key")
export MENTORSTREAM__ACTIONS__SIGNING_KEY=$(cat "$state/action-signing-key")
"$bin" up > "$state/up.log" 2>&1 &
up=$!
simulate=
stop() {
  [ -n "$simulate" ] && kill "$simulate" 2>/dev/null || true
  # What the pilot changed, over what the simulation sent (the simulator plants an effect:
  # docs/impact.md), before the services stop.
  if kill -0 "$up" 2>/dev/null; then
    echo; echo "Pilot against standard, mentees enrolled in the last 90 days:"
    "$bin" impact compare --api-key "$key" 2>&1 || true
  fi
  kill -TERM "$up" 2>/dev/null && wait "$up" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM

# Wait until the services answer (the simulator would retry anyway, but a port in use should
# stop the demo with its reason).
for _ in $(seq 1 120); do
  if ! kill -0 "$up" 2>/dev/null; then
    echo "mentorstream up stopped:"; tail -20 "$state/up.log"; exit 1
  fi
  "$bin" kpi scorecard --api-key "$key" --subject tenant >/dev/null 2>&1 && break
  sleep 0.5
done
echo "services up (log: $state/up.log); simulating $partners partners over 28 days (log: $state/simulate.log)"

MENTORSTREAM_API_KEY=$key "$bin" simulate --partners "$partners" --days 28 > "$state/simulate.log" 2>&1 &
simulate=$!

# Dashboard links for the busiest mentor and the largest team, as the platform would ask for
# them (valid for 8 hours), shown under the terminal dashboard.
showcase=$("$bin" simulate --partners "$partners" --days 28 --showcase)
mentor=$(echo "$showcase" | awk '$1 == "mentor" {print $2}')
leader=$(echo "$showcase" | awk '$1 == "leader" {print $2}')
link() { MENTORSTREAM_API_KEY=$key "$bin" dashboard link --partner "$1" --role "$2" --valid-for 8h --locale ru --page-only; }
mentor_page=$(link "$mentor" mentor)
leader_page=$(link "$leader" leader)
echo "mentor's page ($mentor): $mentor_page"
echo "leader's page ($leader): $leader_page"
"$bin" kpi dashboard --api-key "$key" \
  --footer "In the browser (links valid 8 h; add &lang=en for English):" \
  --footer "  mentor's page ($mentor): $mentor_page" \
  --footer "  leader's page ($leader): $leader_page" \
  --footer "Pilot against standard (printed again when you quit): mentorstream impact compare --api-key \$(cat $state/api-key)"
