"""stream/worker/faust_patches.py, exact changelog end offsets, on the embedded Tansu broker, whose ListOffsets
undercounts a partition ending in a multi-record batch (tests/test_reliability.py pins that bug): the end
offsets Faust's recovery gets are the real ones."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from infra.broker import EmbeddedBroker
from stream.worker.faust_patches import exact_end_offsets


def test_end_offsets_are_read_past_the_broker_figure(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=str(tmp_path / "broker.log")) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic("t-changelog", 3, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=500)
        producer.send("t-changelog", key=b"u", value=b"first", partition=0).get(30)
        for n in range(4):  # one batch of 4 records (linger) at offsets 1-4
            producer.send("t-changelog", key=b"u", value=b"%d" % n, partition=0)
        producer.send("t-changelog", key=b"v", value=b"only", partition=1)
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
        tps = [TopicPartition("t-changelog", p) for p in range(3)]
        reported = consumer.end_offsets(tps)
        consumer.close()
        exact = asyncio.run(exact_end_offsets(broker.bootstrap, reported))
    assert exact == {tps[0]: 5, tps[1]: 1, tps[2]: 0}
    assert set(exact) == set(reported) and all(exact[tp] >= reported[tp] for tp in tps)
