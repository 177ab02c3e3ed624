"""Read Kafka topics without a consumer group: every partition, from the beginning, either followed
(`TopicReader.poll`) or once up to their end (`read_to_end`) with kafka-python; or followed by every worker
(aiokafka, `assign_all`).

Used by the commands that look at a whole topic (`candidates`, `retrain` reads `clicks`, `refresh` the behaviors
changelog, the demo the candidates), by the worker's followers of `items` and `model-releases`, and by the tests
and benchmarks. No group: a group join on Tansu waits max_poll_interval_ms (docs/platform.md#group-joins-are-held),
and nothing is committed. Where to stop: the high watermark of the first fetch response, at least the listed end
offset. Tansu answers ListOffsets(latest) with the base offset of the last batch + 1, not the end
(docs/platform.md#end-offsets-undercount), so the high watermark, which it reports correctly, is the bound; on
Apache Kafka the two agree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
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


class TopicReader:
    """Every partition of `topics` (kafka-python, no group), each read from its beginning, or with `from_end`
    from its listed end (on Tansu that can be inside the last batch: its tail is read again); partitions that
    appear later (a topic created or grown meanwhile) are picked up and read from their beginning.
    `consumer_kwargs` go to the KafkaConsumer (e.g. client_id, max_partition_fetch_bytes)."""

    METADATA_REFRESH_S = 1.0  # how often poll() looks for new partitions

    def __init__(self, bootstrap: str, topics: str | Iterable[str], from_end: bool = False,
                 fetch_max_wait_ms: int = 100, **consumer_kwargs: Any) -> None:
        from kafka import KafkaConsumer

        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.from_end = from_end
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="latest" if from_end else "earliest",
                                      fetch_max_wait_ms=fetch_max_wait_ms, **consumer_kwargs, **kafka_python_kwargs())
        self.partitions: list = []
        self._refreshed = -math.inf
        self._held: list = []  # fetched past the end read_to_end stopped at: the next poll() returns them first

    def assign_new(self) -> list:
        """Assign the partitions that appeared since the last call; returns them."""
        from kafka import TopicPartition

        if time.monotonic() - self._refreshed >= self.METADATA_REFRESH_S:
            self.consumer.topics()  # refreshes the cached metadata
            self._refreshed = time.monotonic()
        found = [TopicPartition(t, p) for t in self.topics for p in sorted(self.consumer.partitions_for_topic(t) or ())]
        new = [tp for tp in found if tp not in self.partitions]
        if new:
            first = not self.partitions
            self.partitions += new
            self.consumer.assign(self.partitions)
            if self.from_end and first:
                self.consumer.seek_to_end(*new)
            else:
                self.consumer.seek_to_beginning(*new)
            for tp in new:  # resolved now, not at the next fetch: "the end" is the end at this call
                self.consumer.position(tp)
        return new

    def wait_for_partitions(self, timeout_s: float) -> bool:
        """Whether any partition of `topics` exists within `timeout_s` (they are then assigned)."""
        deadline = time.monotonic() + timeout_s
        while not self.assign_new() and not self.partitions:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def poll(self, timeout_ms: int = 200) -> list:
        """The records fetched since the last call (ConsumerRecords, each partition's in offset order)."""
        self.assign_new()
        out, self._held = self._held, []
        if not self.partitions:
            time.sleep(timeout_ms / 1000.0)
            return out
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            out.extend(records)
        return out

    def follow(self) -> Iterator[Any]:
        """Every record, as it comes, until the caller stops iterating."""
        while True:
            yield from self.poll()

    def read_to_end(self, timeout_s: float = 60.0) -> Iterator[Any]:
        """The records of the partitions that exist now, up to each one's end at this call; TimeoutError if that
        end is not reached within `timeout_s`."""
        self.assign_new()
        parts = list(self.partitions)
        if not parts:
            return
        listed = self.consumer.end_offsets(parts)
        stop: dict = {}
        todo = set(parts)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{', '.join(self.topics)}: end offsets not reached within {timeout_s:.0f}s")
            polled = self.consumer.poll(timeout_ms=500)
            for tp in parts:
                if tp not in stop and self.consumer.highwater(tp) is not None:
                    stop[tp] = max(self.consumer.highwater(tp), listed[tp])
            for tp, records in polled.items():
                end = stop.get(tp, listed.get(tp, math.inf))
                for record in records:
                    if record.offset >= end:
                        self._held.append(record)
                    else:
                        yield record
            todo = {tp for tp in todo if tp not in stop or self.consumer.position(tp) < stop[tp]}

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TopicLog:
    """Every record of `topic` read so far (a TopicReader from the start): `poll()` reads what came and returns
    them all. For comparing a whole topic with what was sent (tests, the soak); it grows without bound."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.reader = TopicReader(bootstrap, topic)
        self.records: list = []

    def poll(self, timeout_ms: int = 200) -> list:
        self.records.extend(self.reader.poll(timeout_ms))
        return self.records

    def close(self) -> None:
        self.reader.close()


def read_to_end(bootstrap: str, topics: list[str], timeout_s: float = 60.0) -> Iterator[Any]:
    """Every record of the `topics` that exist (kafka-python ConsumerRecords), each partition's in offset order,
    up to each partition's end when the read started; TimeoutError if that end is not reached in time."""
    with TopicReader(bootstrap, topics, fetch_max_wait_ms=200) as reader:
        yield from reader.read_to_end(timeout_s)
