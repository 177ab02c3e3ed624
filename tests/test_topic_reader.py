"""stream/topic_reader.py on the embedded broker: a topic created after the reader, records in multi-record batches
(whose tails Tansu's end offsets leave out), read to the end and then followed without a record lost or repeated."""

from __future__ import annotations

import time
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from infra.broker import EmbeddedBroker
from stream.topic_reader import TopicReader


def send(bootstrap: str, topic: str, values: range) -> None:
    # a long linger: each partition's records share one batch
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=500)
    for n in values:
        producer.send(topic, key=b"k", value=b"%d" % n, partition=n % 2)
    producer.flush()
    producer.close()


def poll_until(reader: TopicReader, n: int, timeout_s: float = 30.0) -> list[int]:
    got: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += [int(r.value) for r in reader.poll()]
    return got


def test_reads_to_the_real_end_then_follows(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=str(tmp_path / "broker.log")) as broker:
        with TopicReader(broker.bootstrap, "t") as reader, TopicReader(broker.bootstrap, "t") as late:
            assert list(reader.read_to_end(10)) == []  # no such topic yet: nothing, at once
            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
            admin.create_topics([NewTopic("t", 2, 1)])
            admin.close()
            send(broker.bootstrap, "t", range(20))
            reader.METADATA_REFRESH_S = 0.0  # look for the new topic now
            assert sorted(int(r.value) for r in reader.read_to_end(30)) == list(range(20))
            send(broker.bootstrap, "t", range(20, 30))
            assert sorted(poll_until(reader, 10)) == list(range(20, 30))
            assert reader.poll() == []  # nothing twice
            # a reader made before the topic existed finds it on a later poll and reads it from the start
            assert sorted(poll_until(late, 30)) == list(range(30))
        with TopicReader(broker.bootstrap, "t", from_end=True) as new_only:
            assert new_only.wait_for_partitions(10)
            send(broker.bootstrap, "t", range(30, 34))
            got = poll_until(new_only, 4 + 4, timeout_s=10)
            # Tansu lists the end of the partition as the base offset of its last batch + 1: that batch's tail
            # (20..29) may come again, nothing older
            assert set(range(30, 34)) <= set(got) and min(got) >= 20
