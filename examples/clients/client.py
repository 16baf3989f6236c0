#!/usr/bin/env python3
"""HTTP/JSON from Python with the standard library only: enrol a partner, record an order,
read the lifetime scorecard once `asOf` has passed the order's acceptance, print its orders and
sales volume."""

import json
import os
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

KEY = os.environ["MENTORSTREAM_API_KEY"]  # make up writes it to .stack/demo/api-key
INGEST = os.environ.get("MENTORSTREAM_INGEST_URL", "http://127.0.0.1:50051")
KPI = os.environ.get("MENTORSTREAM_KPI_URL", "http://127.0.0.1:50053")


def post(url, body):
    """The JSON answer; 503 (UNAVAILABLE: always safe to retry) is retried after Retry-After."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    for _ in range(30):
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as refused:
            if refused.code != 503:
                raise
            time.sleep(float(refused.headers.get("retry-after", "1")))
    raise SystemExit(f"{url} stayed unavailable")


def parse(text):
    """An RFC 3339 time with up to nanoseconds, as seconds since 1970 (a float is enough here)."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp()
    return seconds + (float("0." + fraction) if fraction else 0.0)


def main():
    partner = os.environ.get("PARTNER", f"python-{int(time.time())}")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {"source": "readme", "partnerId": partner, "occurredAt": now}
    answer = post(f"{INGEST}/v1/ingest/Ingest", {"events": [
        {**common, "sourceEventId": f"enrol-{partner}",
         "partnerEnrolled": {"displayName": "Python Example"}},
        {**common, "sourceEventId": f"order-{partner}",
         "orderPlaced": {"orderId": partner, "volume": {"value": "49.50"},
                         "amount": {"amount": {"value": "99.00"}, "currencyCode": "EUR"}}},
    ]})
    statuses = [result["status"] for result in answer["results"]]
    accepted = time.time()
    for _ in range(300):
        try:
            card = post(f"{KPI}/v1/kpi/GetScorecard", {
                "subject": {"kind": "SUBJECT_KIND_PARTNER", "id": partner},
                "window": {"kind": "WINDOW_KIND_LIFETIME"},
            })
        except urllib.error.HTTPError as refused:
            if refused.code != 404:  # NOT_FOUND until the enrolment is applied
                raise
        else:
            # No asOf yet right after the services start: nothing is known to be applied.
            if "asOf" in card and parse(card["asOf"]) >= accepted:
                values = {value["metric"]: value for value in card["values"]}
                orders = values["METRIC_ORDERS"]["count"]
                volume = values["METRIC_SALES_VOLUME"]["decimal"]["value"]
                print(f"{partner}: {', '.join(statuses)}; orders {orders}, sales volume {volume}")
                return
        time.sleep(0.1)
    raise SystemExit(f"the scorecard of {partner} did not catch up")


if __name__ == "__main__":
    main()
