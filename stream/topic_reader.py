"""Read Kafka topics without a consumer group: once, from the beginning to their end (kafka-python), or followed
by every worker (aiokafka, `assign_all`).

Used by the jobs that look at a whole topic (`retrain` reads `clicks`, `refresh` reads the behaviors
changelog). No group: a group join on Tansu waits max_poll_interval_ms (docs/platform.md#group-joins-are-held),
and nothing is committed. Where to stop: the high watermark of the first fetch response, at least the listed end
offset. Tansu answers ListOffsets(latest) with the base offset of the last batch, not the end
(docs/platform.md#end-offsets-undercount), so the high watermark, which it reports correctly, is the bound; on
Apache Kafka the two agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stream.kafka_security import kafka_python_kwargs

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition


async def assign_all(consumer: AIOKafkaConsumer, topic: str, poll_ms: int) -> list[TopicPartition]:
    """Assign every partition of `topic` to a started group-less aiokafka consumer (waiting for its metadata):
    a task every worker runs this way hears every record, where an agent in the worker group would not."""
    import asyncio

    from aiokafka import TopicPartition

    parts = None
    while not parts:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer.topics()  # refreshes the metadata
            await asyncio.sleep(poll_ms / 1000.0)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    return tps


def read_to_end(bootstrap: str, topics: list[str], timeout_s: float = 60.0) -> Iterator[Any]:
    """Every record of the `topics` that exist (kafka-python ConsumerRecords), partition by partition in offset
    order, up to each partition's end when the read started; TimeoutError if that end is not reached in time."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=200, **kafka_python_kwargs())
    try:
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not parts:
            return
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        listed = consumer.end_offsets(parts)
        stop: dict[TopicPartition, int] = {}
        todo = set(parts)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{', '.join(topics)}: end offsets not reached within {timeout_s:.0f}s")
            polled = consumer.poll(timeout_ms=500)
            for tp in parts:
                if tp not in stop and consumer.highwater(tp) is not None:
                    stop[tp] = max(consumer.highwater(tp), listed[tp])
            for tp, records in polled.items():
                for record in records:
                    if record.offset >= stop.get(tp, listed[tp]):
                        break
                    yield record
            todo = {tp for tp in todo if tp not in stop or consumer.position(tp) < stop[tp]}
    finally:
        consumer.close()
