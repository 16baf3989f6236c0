#!/usr/bin/env bash
# HTTP/JSON with curl: enrol a partner, record an order, then read the partner's lifetime
# scorecard once its `asOf` has passed the moment the order was accepted (every event accepted
# before `asOf` is counted). Prints the scorecard. Needs bash, curl and coreutils.
set -euo pipefail
: "${MENTORSTREAM_API_KEY:?export MENTORSTREAM_API_KEY=\$(cat .stack/demo/api-key) (written by make up)}"
ingest=${MENTORSTREAM_INGEST_URL:-http://127.0.0.1:50051}
kpi=${MENTORSTREAM_KPI_URL:-http://127.0.0.1:50053}
partner=${PARTNER:-curl-$(date +%s)}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# POST a JSON body; prints the answer. A refusal is printed to stderr and fails, except 503
# (UNAVAILABLE: always safe to retry), which is retried after its Retry-After.
post() { # url body
  local answer status
  for _ in $(seq 1 30); do
    answer=$(curl -sS -w '\n%{http_code}' -H "authorization: Bearer $MENTORSTREAM_API_KEY" \
      -H 'content-type: application/json' "$1" -d "$2")
    status=${answer##*$'\n'}
    answer=${answer%$'\n'*}
    [[ $status == 503 ]] || break
    sleep 1
  done
  if [[ $status != 200 ]]; then
    echo "$1: HTTP $status $answer" >&2
    return 1
  fi
  echo "$answer"
}

post "$ingest/v1/ingest/Ingest" '{"events": [
  {"source": "readme", "sourceEventId": "enrol-'"$partner"'", "partnerId": "'"$partner"'",
   "occurredAt": "'"$now"'", "partnerEnrolled": {"displayName": "Curl Example"}},
  {"source": "readme", "sourceEventId": "order-'"$partner"'", "partnerId": "'"$partner"'",
   "occurredAt": "'"$now"'", "orderPlaced": {"orderId": "'"$partner"'", "volume": {"value": "49.50"},
   "amount": {"amount": {"value": "99.00"}, "currencyCode": "EUR"}}}]}' >/dev/null
accepted=$(date -u +%s%N)

for _ in $(seq 1 300); do
  # NOT_FOUND (404) until the enrolment is applied; then poll until asOf passes `accepted`.
  if card=$(post "$kpi/v1/kpi/GetScorecard" '{"subject": {"kind": "SUBJECT_KIND_PARTNER",
      "id": "'"$partner"'"}, "window": {"kind": "WINDOW_KIND_LIFETIME"}}' 2>/dev/null); then
    # No asOf yet right after the services start: nothing is known to be applied.
    as_of=$(grep -o '"asOf":"[^"]*"' <<<"$card" | cut -d'"' -f4 || true)
    if [[ -n $as_of && $(date -u -d "$as_of" +%s%N) -ge $accepted ]]; then
      echo "$card"
      exit 0
    fi
  fi
  sleep 0.1
done
echo "the scorecard of $partner did not catch up" >&2
exit 1
