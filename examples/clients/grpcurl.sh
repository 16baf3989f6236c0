#!/usr/bin/env bash
# The same over gRPC with grpcurl (make tools installs it into .stack/tools/bin; reflection
# describes every message, no .proto files needed). Prints the scorecard.
set -euo pipefail
: "${MENTORSTREAM_API_KEY:?export MENTORSTREAM_API_KEY=\$(cat .stack/demo/api-key) (written by make up)}"
ingest=${MENTORSTREAM_INGEST_ADDR:-127.0.0.1:50051}
kpi=${MENTORSTREAM_KPI_ADDR:-127.0.0.1:50053}
partner=${PARTNER:-grpcurl-$(date +%s)}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
auth="authorization: Bearer $MENTORSTREAM_API_KEY"

# UNAVAILABLE is always safe to retry; anything else stops the script.
until grpcurl -plaintext -H "$auth" -d '{"events": [
  {"source": "readme", "sourceEventId": "enrol-'"$partner"'", "partnerId": "'"$partner"'",
   "occurredAt": "'"$now"'", "partnerEnrolled": {"displayName": "gRPC Example"}},
  {"source": "readme", "sourceEventId": "order-'"$partner"'", "partnerId": "'"$partner"'",
   "occurredAt": "'"$now"'", "orderPlaced": {"orderId": "'"$partner"'", "volume": {"value": "49.50"},
   "amount": {"amount": {"value": "99.00"}, "currencyCode": "EUR"}}}]}' \
  "$ingest" mentorstream.ingest.v1.IngestService/Ingest >/dev/null 2>"${TMPDIR:-/tmp}/grpcurl.$$"; do
  grep -q 'Code: Unavailable' "${TMPDIR:-/tmp}/grpcurl.$$" || { cat "${TMPDIR:-/tmp}/grpcurl.$$" >&2; exit 1; }
  sleep 1
done
rm -f "${TMPDIR:-/tmp}/grpcurl.$$"
accepted=$(date -u +%s%N)

for _ in $(seq 1 300); do
  if card=$(grpcurl -plaintext -H "$auth" -d '{"subject": {"kind": "SUBJECT_KIND_PARTNER",
      "id": "'"$partner"'"}, "window": {"kind": "WINDOW_KIND_LIFETIME"}}' \
      "$kpi" mentorstream.kpi.v1.KpiService/GetScorecard 2>/dev/null); then
    # No asOf yet right after the services start: nothing is known to be applied.
    as_of=$(grep -o '"asOf": "[^"]*"' <<<"$card" | cut -d'"' -f4 || true)
    if [[ -n $as_of && $(date -u -d "$as_of" +%s%N) -ge $accepted ]]; then
      echo "$card"
      exit 0
    fi
  fi
  sleep 0.1
done
echo "the scorecard of $partner did not catch up" >&2
exit 1
