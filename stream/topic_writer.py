"""Write Kafka topics (kafka-python): create the missing ones with a given partition count, and send one keyed
record per item at a steady rate. Used by the commands that produce: `produce` (clicks, items), `refresh`
(refresh requests), the demo and the benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from model.progress import Progress
from stream.kafka_security import kafka_python_kwargs

T = TypeVar("T")


@dataclass
class SendSummary:
    """What a `send_keyed` loop did: records acknowledged (`sent`), failed, and the first failure."""

    sent: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Pacer:
    """Holds an average of `rate` events/s from the start (0 = no pacing), without drift."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.start = time.perf_counter()

    def wait(self, n: int) -> None:
        """Block until event number `n` (from 0) is due."""
        if not self.interval:
            return
        delay = self.start + n * self.interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def ensure_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Create those of `topics` that do not exist, with `partitions` partitions each. Sending to a missing
    topic would let the broker auto-create it with its own default count, which Faust rejects: a table's
    changelog must have as many partitions as its source topic. (docker-compose's kafka-init does the
    same for a deployment.)"""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="mindstream-produce", **kafka_python_kwargs())
    try:
        missing = [t for t in topics if t not in set(admin.list_topics())]
        for topic in missing:
            try:
                admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass  # created meanwhile (by a worker starting)
    finally:
        admin.close()


def make_producer(bootstrap: str):
    from kafka import KafkaProducer

    # acks=1 and no idempotence: the embedded broker serves no InitProducerId
    # (docs/platform.md#no-transactions-no-idempotent-producer);
    # the worker de-duplicates by event_id. A short linger batches without adding visible latency.
    return KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2, enable_idempotence=False,
                         retries=5, client_id="mindstream-produce", **kafka_python_kwargs())


def send_keyed(items: Iterable[T], to_record: Callable[[T], tuple[bytes, bytes]], bootstrap: str, topic: str,
               rate: float = 0.0, progress: bool = True, total: int | None = None, unit: str = "ev",
               desc: str | None = None) -> SendSummary:
    """Send one record per item to `topic` at `rate` items/s (0 = as fast as possible), with a progress bar
    (model/progress.py: on a terminal; else one line at the end), then flush. `to_record(item)` gives
    (key, value) and is called when the item is due, so a timestamp it stamps is the send time. A failed
    send is counted through the producer's errback (it may fail after
    `send` returned); `sent` counts only the others."""
    producer = make_producer(bootstrap)
    summary = SendSummary()

    def failed(exc: BaseException) -> None:
        summary.failed += 1
        summary.first_error = summary.first_error or repr(exc)

    pacer = Pacer(rate)
    bar = Progress(desc or f"producing to {topic}", total=total, unit=unit, enabled=progress)
    start = time.perf_counter()
    ok = False
    try:
        for n, item in enumerate(items):
            pacer.wait(n)
            key, value = to_record(item)
            producer.send(topic, key=key, value=value).add_errback(failed)
            summary.sent += 1
            bar.update()
        producer.flush()
        ok = True
    finally:
        summary.elapsed_s = time.perf_counter() - start
        bar.close(summary=ok)
        producer.close()
    summary.sent -= summary.failed
    return summary
