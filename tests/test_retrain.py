"""`mindstream retrain` on the embedded broker: clicks produced to Kafka -> verified release -> announcement."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from infra.broker import EmbeddedBroker
from model.data import load_dataset
from model.mind import MINDConfig
from model.release import current_release_dir, load_release
from model.train import TrainConfig
from stream import topology
from stream.commands.announce import publish
from stream.commands.retrain import retrain
from stream.messages import Announcement
from stream.topic_reader import read_to_end
from tests.streamkit import read_topic

TINY_MODEL = MINDConfig(d=8, K=2, max_len=10, hidden=(16,), profile_dim=4)
TINY_TRAIN = TrainConfig(epochs=1, batch_size=256, threads=1, progress=False)


def last_announcement(bootstrap: str) -> Announcement:
    records = list(read_to_end(bootstrap, [topology.MODEL_RELEASES.name]))
    assert records, "nothing announced"
    assert records[-1].key == b"current"
    return Announcement.from_json(records[-1].value)


def test_retrain_learns_items_that_only_appeared_in_the_stream(shared_data: Path, tmp_path: Path) -> None:
    ml = load_dataset(shared_data / "ml-100k")
    users = sorted(ml.sequences, key=int)[:60]
    now = time.time()
    sent: list[tuple[bytes | None, bytes]] = []
    n = 0

    def click(user: str, item: str, ts: float) -> None:
        nonlocal n
        n += 1
        sent.append((user.encode(), json.dumps({"event_id": f"r{n}", "user_id": user, "item_id": item,
                                                 "ts": ts}).encode()))

    for user in users:  # real MovieLens histories, clicked in the last hour
        for j, item in enumerate(ml.sequences[user][-15:]):
            click(user, item, now - 3600 + j)
    stream_only = [f"new-{k}" for k in range(5)]
    for k, user in enumerate(users[:30]):  # items no dataset has: each clicked by several users
        click(user, stream_only[k % 5], now - 60)
    click(users[0], "too-old", now - 40 * 86400)  # outside the 7-day window
    sent.append(sent[0])  # a redelivered click
    bad = [(b"u-x", b"{not json"), (b"u-x", json.dumps({"user_id": "u-x", "ts": now}).encode()),
           (b"other", json.dumps({"user_id": "u-x", "item_id": "1", "ts": now}).encode())]
    sent[10:10] = bad

    # a small base dataset in another format: its items and users join the stream's
    base = tmp_path / "base.csv"
    base.write_text("user_id,item_id,ts,category\n" + "".join(
        f"base-user-{u},base-item-{(u + k) % 7},{k},genre-{k % 2}\n" for u in range(10) for k in range(6)))

    models = tmp_path / "models"
    with EmbeddedBroker(log_path=str(tmp_path / "broker.log")) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(topology.CLICKS.name, 2, 1), NewTopic(topology.MODEL_RELEASES.name, 1, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for key, value in sent:
            producer.send(topology.CLICKS.name, key=key, value=value)
        producer.flush()
        producer.close()

        path, stats = retrain(models, broker.bootstrap, days=7, base=base, model_cfg=TINY_MODEL,
                              train_cfg=TINY_TRAIN, now=now)
        announced = last_announcement(broker.bootstrap)

    assert stats.records == len(sent)
    assert stats.invalid == {"not_json": 1, "missing_field": 1, "key_mismatch": 1}
    assert stats.too_old == 1 and stats.duplicates == 1
    assert stats.kept == len(sent) - len(bad) - 2

    release = load_release(path)
    vocab = set(release.item_ids)
    assert set(stream_only) <= vocab  # only ever seen in the stream
    assert {f"base-item-{k}" for k in range(7)} <= vocab
    assert {i for u in users for i in ml.sequences[u][-15:]} <= vocab
    assert "too-old" not in vocab
    assert release.manifest["data"]["users"] == len(users) + 10
    assert current_release_dir(models) == path
    assert announced.version == release.version
    assert announced.manifest_sha256 == release.manifest_sha256
    assert Path(announced.uri) == path.resolve()
    # the exported training set stays beside the releases: the release's data.path names it
    assert Path(release.manifest["data"]["path"]).is_file()


def test_retrain_without_clicks_or_base_fails_and_announces_nothing(tmp_path: Path) -> None:
    from model.data import DataError

    with EmbeddedBroker() as broker:
        with pytest.raises(DataError):
            retrain(tmp_path / "models", broker.bootstrap, model_cfg=TINY_MODEL, train_cfg=TINY_TRAIN)
        # model-releases read to a marker published now: the marker is all it holds
        publish(broker.bootstrap, topology.MODEL_RELEASES.name, Announcement("marker", "/nowhere", "0" * 64, 0.0))
        records = read_topic(broker.bootstrap, topology.MODEL_RELEASES.name,
                             lambda rs: any(Announcement.from_json(r.value).version == "marker" for r in rs), 60)
        assert [Announcement.from_json(r.value).version for r in records] == ["marker"]
    assert not (tmp_path / "models" / "CURRENT").exists()
    assert not list((tmp_path / "models").glob("*/manifest.json"))
    assert not list((tmp_path / "models").glob("datasets/*"))
