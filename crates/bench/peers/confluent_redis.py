"""Peer 1: a confluent-kafka + redis-py consumer written the obvious efficient way. It reads
every record of the topic in batches, folds each batch into per-partner daily sales-volume
and recruits increments, applies them with one pipelined round trip, then commits the
batch's offsets. Prints its CPU seconds (process time, librdkafka's threads included) as
JSON."""

import argparse
import json
import time
from collections import Counter

import redis
from confluent_kafka import Consumer

from activity import cpu, facts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--records", type=int, required=True)
    # The bench passes every peer the same arguments; each takes what it needs.
    args, _ = parser.parse_known_args()

    store = redis.Redis.from_url(args.redis)
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    started, cpu_before = time.monotonic(), cpu()
    seen = 0
    while seen < args.records:
        messages = consumer.consume(num_messages=1000, timeout=1.0)
        volume = Counter()
        recruits = Counter()
        for message in messages:
            if message.error():
                continue
            tenant, partner, day, delta, sponsor = facts(message.value())
            if delta:
                volume[f"{args.prefix}:{tenant}:{partner}:sv:{day}"] += delta
            if sponsor:
                recruits[f"{args.prefix}:{tenant}:{sponsor}:rec:{day}"] += 1
            seen += 1
        if not messages:
            continue
        pipeline = store.pipeline(transaction=False)
        for key, delta in volume.items():
            pipeline.incrby(key, delta)
        for key, delta in recruits.items():
            pipeline.incrby(key, delta)
        pipeline.execute()
        consumer.commit(asynchronous=False)
    wall, cpu_used = time.monotonic() - started, cpu() - cpu_before
    consumer.close()
    print(json.dumps({"records": seen, "cpu_seconds": cpu_used, "wall_seconds": wall}))


if __name__ == "__main__":
    main()
