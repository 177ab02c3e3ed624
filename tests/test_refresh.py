"""`mindstream refresh`: which users it finds in the behaviors changelog (the end to end run, a worker moving
every stored user to a new release, is in tests/test_hotswap.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from infra.broker import EmbeddedBroker
from stream import topology
from stream.commands.refresh import changelog_topics, read_users
from stream.config import Settings
from stream.worker.app import app_id


def test_users_come_from_both_changelogs_tombstones_excluded_batch_tails_included(tmp_path: Path) -> None:
    settings = Settings(app_id="ms", topic_prefix="t-")
    all_role, interest_role = changelog_topics(settings)
    # the app ids of role all and role interest (stream/worker/app.py); Faust's naming: tests/test_topology.py
    roles = [app_id(dataclasses.replace(settings, role=role)) for role in ("all", "interest")]
    assert [all_role, interest_role] == [topology.BEHAVIORS.changelog(a) for a in roles]
    with EmbeddedBroker(log_path=str(tmp_path / "broker.log")) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(all_role, 2, 1), NewTopic(interest_role, 2, 1)])
        admin.close()
        assert read_users(broker.bootstrap, [all_role, interest_role]) == []
        # a long linger: the records of a partition share one batch, whose tail Tansu's end offsets leave out
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=500)
        state = json.dumps({"seq": [[1.0, "i1"]], "ids": [], "profile": {}}).encode()
        for n in range(20):
            producer.send(all_role, key=json.dumps(f"u{n}").encode(), value=state, partition=n % 2)
        producer.send(all_role, key=json.dumps("u3").encode(), value=None, partition=1)  # deleted
        producer.send(interest_role, key=json.dumps("w1").encode(), value=state, partition=0)
        producer.send(interest_role, key=b"not json", value=state, partition=0)
        producer.flush()
        producer.close()
        users = read_users(broker.bootstrap, [all_role, interest_role, "t-ms-no-such-changelog"])
    assert users == sorted([f"u{n}" for n in range(20) if n != 3] + ["w1"])
