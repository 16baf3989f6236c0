"""Peer 2: Quix Streams with tumbling-window aggregations: per-partner daily sales volume
(records are keyed by partner) and per-sponsor daily recruits (regrouped by sponsor), each a
one-day tumbling window summed in Quix's state store, offsets committed by Quix. Prints its CPU
seconds as JSON once every record was processed."""

import argparse
import json
import time

from quixstreams import Application

from activity import cpu, facts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--records", type=int, required=True)
    # Enrolments with a sponsor: each also passes through the repartition topic.
    parser.add_argument("--recruits", type=int, required=True)
    # The bench passes every peer the same arguments; each takes what it needs.
    args, _ = parser.parse_known_args()

    app = Application(
        broker_address=args.brokers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state,
        # Creates the repartition topic of the regrouping by sponsor.
        auto_create_topics=True,
        use_changelog_topics=False,
    )
    topic = app.topic(args.topic, value_deserializer="bytes", key_deserializer="bytes")
    progress = {"seen": 0, "recruits": 0, "started": None, "cpu": None}

    def done():
        if progress["seen"] >= args.records and progress["recruits"] >= args.recruits:
            app.stop()

    def parse(payload):
        if progress["started"] is None:
            progress["started"], progress["cpu"] = time.monotonic(), cpu()
        tenant, partner, day, delta, sponsor = facts(payload)
        progress["seen"] += 1
        done()
        return {"partner": partner, "volume": delta, "sponsor": sponsor}

    def recruited(event):
        progress["recruits"] += 1
        done()
        return 1

    day = 24 * 3600 * 1000
    events = app.dataframe(topic).apply(parse)
    sales = events[events["volume"] != 0]
    sales = sales.apply(lambda event: event["volume"])
    sales.tumbling_window(day).sum().final()
    recruits = events[events["sponsor"] != ""]
    recruits = recruits.group_by("sponsor").apply(recruited)
    recruits.tumbling_window(day).sum().final()
    app.run()
    print(
        json.dumps(
            {
                "records": progress["seen"],
                "cpu_seconds": cpu() - (progress["cpu"] or 0),
                "wall_seconds": time.monotonic() - (progress["started"] or time.monotonic()),
            }
        )
    )


if __name__ == "__main__":
    main()
