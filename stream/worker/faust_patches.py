"""Fixes to faust-streaming 0.15.3 (and to what it assumes of the broker) that the worker applies at start.

1. **Fetch wait.** Faust builds its aiokafka consumer with `fetch_max_wait_ms=1500` and no setting for it; Tansu
   holds every fetch that long on a quiet partition, so each hop of the pipeline would add up to 1.5 s.
   `install` sets `MINDSTREAM_FETCH_MAX_WAIT_MS` instead.
2. **Stream partitions resumed before the seek.** When a rebalance's recovery ends, Faust resumes the stream
   partitions and only then seeks them to their committed offsets, while its fetcher is already running. Records
   fetched in between race with the seek: in tests/test_pipeline.py's restart, 1-3 clicks per partition that
   arrived during the restart were handed to no agent, and their offsets were never committed past. The seek
   is made to happen first, the resume right after it (`_seek_before_resume`).
3. **Exact changelog end offsets**, below.

Faust recovers a table by reading its changelog up to the end offset the broker reports (ListOffsets), and
refuses to start when its local RocksDB has applied an offset beyond it (ConsistencyError). The embedded Tansu
broker reports the base offset of a partition's last record batch + 1, not the log end
(docs/platform.md#end-offsets-undercount), so a changelog ending in a multi-record batch would lose its tail on
recovery. Instead of trusting that figure, the end is found by reading: from the reported end - 1 (a record that
exists) forward until the broker has nothing more. On a broker that reports correctly this reads one record per
partition and changes nothing.

`_exact_changelog_ends` wraps `faust.tables.recovery.Recovery._build_highwaters`, the one place recovery takes
end offsets.

Each patch wraps one Faust method; a second `install` (tests build several apps in one process) re-wraps the
original, not the wrapper.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from stream.kafka_security import aiokafka_kwargs

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 30.0  # the whole search; each partition holds at most one batch beyond the reported end
QUIET_MS = 200  # a fetch round with nothing new for this long means the end is reached


async def exact_end_offsets(bootstrap: str, reported: Mapping[Any, int]) -> dict[Any, int]:
    """The log end offset of each partition in `reported` ({(topic, partition): end offset the broker
    reports}), found by reading past the reported one. Keys come back as given."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    ends = dict(reported)
    todo = {TopicPartition(tp[0], tp[1]): tp for tp, end in reported.items() if end > 0}
    if not todo:
        return ends
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=10, **aiokafka_kwargs())
    await consumer.start()
    try:
        consumer.assign(list(todo))
        for tp, key in todo.items():
            consumer.seek(tp, reported[key] - 1)
        deadline = time.monotonic() + READ_TIMEOUT_S
        last: dict[TopicPartition, int] = {}
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=QUIET_MS)
            for tp, records in batch.items():
                last[tp] = max(last.get(tp, -1), records[-1].offset)
            # done once every partition has shown its record at reported - 1 and a round brought nothing
            if not batch and all(tp in last for tp in todo):
                break
        for tp, key in todo.items():
            ends[key] = max(reported[key], last.get(tp, -1) + 1)
    finally:
        await consumer.stop()
    return ends


def install(bootstrap: str, fetch_max_wait_ms: int) -> None:
    """Apply the three fixes (once per worker process; one bootstrap per process)."""
    _set_fetch_max_wait(fetch_max_wait_ms)
    _seek_before_resume()
    _exact_changelog_ends(bootstrap)


def _wrap(cls: type, name: str, make: Any) -> None:
    original = getattr(getattr(cls, name), "__wrapped__", getattr(cls, name))
    wrapper = make(original)
    wrapper.__wrapped__ = original
    setattr(cls, name, wrapper)


def _set_fetch_max_wait(ms: int) -> None:
    """aiokafka reads the value in start(), after Faust built the consumer."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    def make(original: Any) -> Any:
        def create_worker_consumer(self, transport):
            consumer = original(self, transport)
            consumer._fetch_max_wait_ms = ms
            return consumer
        return create_worker_consumer

    _wrap(AIOKafkaConsumerThread, "_create_worker_consumer", make)


def _seek_before_resume() -> None:
    """In both places recovery ends (`_resume_streams`: nothing to recover; `on_recovery_completed`), Faust calls
    `consumer.resume_partitions(stream partitions)` and then `consumer.perform_seek()`. For the duration of the
    call, the resume is held back and done right after the seek (or at the end, if no seek came)."""
    from faust.tables.recovery import Recovery

    def make(original: Any) -> Any:
        async def recovery_end(self, generation_id: int = 0) -> None:
            consumer = self.app.consumer
            resume, seek = consumer.resume_partitions, consumer.perform_seek
            held: list = []

            async def seek_then_resume() -> None:
                await seek()
                while held:
                    resume(held.pop(0))

            consumer.resume_partitions, consumer.perform_seek = held.append, seek_then_resume
            try:
                await original(self, generation_id)
            finally:
                del consumer.resume_partitions, consumer.perform_seek  # the class's methods again
                while held:
                    resume(held.pop(0))
        return recovery_end

    _wrap(Recovery, "_resume_streams", make)
    _wrap(Recovery, "on_recovery_completed", make)


def _exact_changelog_ends(bootstrap: str) -> None:
    from faust.tables.recovery import Recovery

    def make(original: Any) -> Any:
        async def build_highwaters(self, consumer, tps, destination, title):
            await original(self, consumer, tps, destination, title)
            # Faust keeps end offset - 1 ("highwater", -1 for an empty partition)
            reported = {tp: destination[tp] + 1 for tp in tps}
            exact = await asyncio.wait_for(exact_end_offsets(bootstrap, reported), READ_TIMEOUT_S + 10)
            for tp, end in exact.items():
                if end != reported[tp]:
                    log.info("%s changelog %s[%d]: end offset %d, broker reported %d", title, tp.topic,
                             tp.partition, end, reported[tp])
                destination[tp] = end - 1
        return build_highwaters

    _wrap(Recovery, "_build_highwaters", make)
