"""A subscriber of mentorstream.kpi.updates.v1 in Python (docs/kpi-topic.md).

It needs confluent-kafka and protobuf, and the compiled contract as a descriptor set
(`buf build proto -o mentorstream.binpb`): the messages are built from it at run time, so
there is no generated code to keep in step. It reads the topic from the start with a consumer
group of its own, keeps the latest record per key, and once the topic has been quiet for
--idle-ms after its last record prints one line per key, exactly as examples/kpi-updates
(Rust) does:

    {key} as_of={unix seconds} METRIC_...={value} ...

Run: python kpi_updates.py --descriptors mentorstream.binpb --group my-app
"""

import argparse
import time

from confluent_kafka import Consumer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def kpi_update_class(descriptors_path):
    with open(descriptors_path, "rb") as file:
        files = descriptor_pb2.FileDescriptorSet.FromString(file.read())
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:  # buf writes every file after its imports
        pool.Add(proto)
    update = pool.FindMessageTypeByName("mentorstream.kpi.v1.KpiUpdate")
    metric = pool.FindEnumTypeByName("mentorstream.kpi.v1.Metric")
    return message_factory.GetMessageClass(update), metric


def line(key, update, metric_enum):
    shown = [f"{key} as_of={update.as_of.seconds}"]
    for value in sorted(update.values, key=lambda value: value.metric):
        number = metric_enum.values_by_number.get(value.metric)
        name = number.name if number else "METRIC_UNKNOWN"
        kind = value.WhichOneof("value")
        if kind == "count":
            text = str(value.count)
        elif kind == "decimal":
            text = value.decimal.value
        elif kind == "fraction":
            fraction = value.fraction
            quotient = fraction.value.value if fraction.HasField("value") else "null"
            text = f"{fraction.numerator}/{fraction.denominator}={quotient}"
        else:
            text = "?"
        shown.append(f"{name}={text}")
    return " ".join(shown)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", default="127.0.0.1:19092")
    parser.add_argument("--topic", default="mentorstream.kpi.updates.v1")
    parser.add_argument("--group", required=True)
    parser.add_argument("--descriptors", required=True)
    parser.add_argument("--idle-ms", type=int, default=3000)
    parser.add_argument("--wait-ms", type=int, default=60000)
    args = parser.parse_args()

    kpi_update, metric_enum = kpi_update_class(args.descriptors)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    latest = {}
    started, last_record = time.monotonic(), None

    def listening():
        if last_record is None:
            return time.monotonic() - started < args.wait_ms / 1000
        return time.monotonic() - last_record < args.idle_ms / 1000

    while listening():
        message = consumer.poll(0.1)
        if message is None:
            continue
        if message.error():
            raise RuntimeError(message.error())
        last_record = time.monotonic()
        key = message.key().decode("utf-8", errors="replace")
        if message.value() is None:  # a tombstone: the key is gone
            latest.pop(key, None)
        else:
            latest[key] = kpi_update.FromString(message.value())
    consumer.close()
    for key in sorted(latest):
        print(line(key, latest[key], metric_enum))


if __name__ == "__main__":
    main()
