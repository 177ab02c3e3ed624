"""Can the embedded broker bound what it holds? Three mechanisms, tried on a fresh Tansu broker.

    python -m bench.broker_bounds [--records 100000] [--wait-s 60]

1. topic retention: a topic created with retention.ms=1000 (cleanup.policy=delete, segment.ms=1000) is filled,
   and after --wait-s its log start offset is read back (a broker that applies retention moves it forward);
2. DeleteRecords (the Kafka admin call that moves the log start offset), through aiokafka's admin client;
3. DeleteTopics, the one remaining way to drop records.

Prints one line per mechanism and a JSON summary. Takes about --wait-s plus a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from infra.broker import EmbeddedBroker


def fill(bootstrap: str, topic: str, records: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for _ in range(records):
            producer.send(topic, b"x" * 200, partition=0)
        producer.flush()
    finally:
        producer.close()


def offsets(bootstrap: str, topic: str) -> tuple[int, int]:
    """(log start offset, end offset as the broker reports it) of partition 0."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        return consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


async def probe(bootstrap: str, records: int, wait_s: float) -> dict[str, object]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.records_to_delete import RecordsToDelete
    from aiokafka.structs import TopicPartition as AioTopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    out: dict[str, object] = {"records": records}
    try:
        await admin.create_topics([NewTopic("retained", 1, 1, topic_configs={
            "retention.ms": "1000", "segment.ms": "1000", "cleanup.policy": "delete"})])
        fill(bootstrap, "retained", records)
        time.sleep(wait_s)
        start, end = offsets(bootstrap, "retained")
        out["retention"] = {"wait_s": wait_s, "log_start": start, "end": end, "applied": start > 0}
        print(f"retention.ms=1000: after {wait_s:.0f} s the log starts at {start} of {end} "
              f"({'applied' if start > 0 else 'not applied'})")

        await admin.create_topics([NewTopic("deleted", 1, 1)])
        fill(bootstrap, "deleted", records)
        try:
            await admin.delete_records({AioTopicPartition("deleted", 0): RecordsToDelete(records // 2)},
                                       timeout_ms=5000)
            error = ""
        except Exception as e:  # the probe reports whatever the broker does
            error = f"{type(e).__name__}: {e}"
        start, end = offsets(bootstrap, "deleted")
        out["delete_records"] = {"before_offset": records // 2, "log_start": start, "error": error,
                                 "applied": start >= records // 2}
        print(f"DeleteRecords before {records // 2}: log starts at {start} ({error or 'no error'})")

        await admin.delete_topics(["deleted"])
        gone = "deleted" not in (await admin.list_topics())
        out["delete_topics"] = {"applied": gone}
        print(f"DeleteTopics: {'the topic is gone' if gone else 'the topic is still there'}")
    finally:
        await admin.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records written per topic")
    parser.add_argument("--wait-s", type=float, default=60.0, help="seconds given to retention to act")
    args = parser.parse_args()
    broker = EmbeddedBroker().start()
    try:
        summary = asyncio.run(probe(broker.bootstrap, args.records, args.wait_s))
    finally:
        broker.stop()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
