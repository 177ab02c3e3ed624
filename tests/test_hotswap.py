"""Hot swap on real components: releases written by model/release.py, the embedded Tansu broker and
`mindstream worker` (Faust, RocksDB, onnxruntime, hnswlib) as a subprocess.

v1 is the session's ml-100k release (item ids "1", "2", ...); v2 is trained on the same MovieLens users with
every item id prefixed "b:". The two item sets are disjoint, so a candidate list that mixed a message's
interests with the other version's index, or items of both, cannot go unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import hnswlib
import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from prometheus_client import REGISTRY

from infra.broker import EmbeddedBroker
from infra.measure import metric_value
from model.data import load_dataset
from model.release import load_release, set_current
from stream import topology
from stream.commands.announce import announcement_for, publish
from stream.commands.rollback import previous_version
from stream.messages import Announcement
from stream.worker.hotswap import OK, REJECTED, SKIPPED, handle
from stream.worker.releases import ReleaseRegistry
from tests.conftest import V2_PREFIX
from tests.streamkit import Worker, broker_with_topics, read_topic

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 2


# ---------------------------------------------------------------------------------------------- releases


def corrupt_copies(release: Path, where: Path) -> dict[str, Path]:
    """Broken releases: a file changed after its checksum was taken; an index of the wrong dimension (with
    checksums that match, so only the dimension check can catch it)."""
    out = {}
    bad_sum = where / "bad-checksum"
    shutil.copytree(release, bad_sum)
    manifest = json.loads((bad_sum / "manifest.json").read_text())
    manifest["version"] = "bad-checksum"
    (bad_sum / "manifest.json").write_text(json.dumps(manifest))
    ids = (bad_sum / "item_ids.txt").read_text().splitlines()
    ids[0], ids[1] = ids[1], ids[0]
    (bad_sum / "item_ids.txt").write_text("\n".join(ids) + "\n")
    out["bad-checksum"] = bad_sum

    wrong_dim = where / "wrong-dim"
    shutil.copytree(release, wrong_dim)
    manifest = json.loads((wrong_dim / "manifest.json").read_text())
    n, d = manifest["item_count"], manifest["d"]
    index = hnswlib.Index(space="ip", dim=d + 2)  # a release's index is d + 1 wide (lifted, model/ann.py)
    index.init_index(max_elements=n)
    index.add_items(np.random.default_rng(0).normal(size=(n, d + 2)).astype(np.float32), np.arange(n))
    index.save_index(str(wrong_dim / "items.hnsw"))
    manifest["version"] = "wrong-dim"
    manifest["files"]["items.hnsw"] = hashlib.sha256((wrong_dim / "items.hnsw").read_bytes()).hexdigest()
    (wrong_dim / "manifest.json").write_text(json.dumps(manifest))
    out["wrong-dim"] = wrong_dim
    return out


def swaps(result: str) -> float:
    return REGISTRY.get_sample_value("mindstream_model_swaps_total", {"result": result}) or 0.0


# ---------------------------------------------------------------------------------------------- the pieces


def test_announced_release_is_verified_and_swapped_in(models: Path, ml100k_release: Path, v2_dir: Path) -> None:
    registry = ReleaseRegistry(models)
    registry.load_initial()
    ok_before = swaps("ok")
    result = asyncio.run(handle(announcement_for(models / v2_dir.name).to_json(), registry, models))
    assert result == OK
    assert registry.current.version == v2_dir.name
    assert swaps("ok") == ok_before + 1
    # the previous version stays loaded for messages stamped with it
    assert registry.get(ml100k_release.name) is not None
    # announcing what is served already changes nothing and counts nothing
    assert asyncio.run(handle(announcement_for(models / v2_dir.name).to_json(), registry, models)) == SKIPPED
    assert swaps("ok") == ok_before + 1


def test_a_uri_not_mounted_here_is_found_under_the_models_dir(models: Path, v2_dir: Path, tmp_path: Path) -> None:
    registry = ReleaseRegistry(models)
    registry.load_initial()
    announced = announcement_for(models / v2_dir.name)
    elsewhere = Announcement(announced.version, f"file:///trainer/models/{announced.version}",
                             announced.manifest_sha256, announced.created_ts)
    assert asyncio.run(handle(elsewhere.to_json(), registry, models)) == OK
    assert registry.current.path == models / v2_dir.name


def test_corrupt_or_mismatched_releases_are_rejected_and_the_serving_version_stays(
        models: Path, ml100k_release: Path, v2_dir: Path, tmp_path: Path) -> None:
    registry = ReleaseRegistry(models)
    registry.load_initial()
    v1 = registry.current.version
    broken = corrupt_copies(ml100k_release, tmp_path)
    good = announcement_for(models / v2_dir.name)
    records = {
        "bad checksum": announcement_for(broken["bad-checksum"]).to_json(),
        "wrong dimension": announcement_for(broken["wrong-dim"]).to_json(),
        "manifest sha256 differs from the announcement": Announcement(
            good.version, good.uri, "0" * 64, good.created_ts).to_json(),
        "no such directory": Announcement("nope", str(tmp_path / "nope"), "0" * 64, 1.0).to_json(),
        "not an announcement": b'{"version": 3}',
        "not JSON": b"\xff",
    }
    for why, raw in records.items():
        before = swaps("rejected")
        assert asyncio.run(handle(raw, registry, models)) == REJECTED, why
        assert swaps("rejected") == before + 1, why
        assert registry.current.version == v1, why


def test_previous_version_is_the_one_created_before_current(models: Path, ml100k_release: Path,
                                                             v2_dir: Path) -> None:
    set_current(models, v2_dir.name)
    assert previous_version(models) == ml100k_release.name
    set_current(models, ml100k_release.name)
    with pytest.raises(Exception, match="oldest"):
        previous_version(models)


def test_a_starting_worker_takes_the_newest_announcement_only(tmp_path: Path) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as AioTopicPartition

    from stream.worker.hotswap import _catch_up

    async def newest(bootstrap: str):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [AioTopicPartition(topology.MODEL_RELEASES.name, 0)]
            consumer.assign(tps)
            return await _catch_up(consumer, tps, 200)
        finally:
            await consumer.stop()

    with EmbeddedBroker(log_path=str(tmp_path / "broker.log")) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(topology.MODEL_RELEASES.name, 1, 1)])
        admin.close()
        assert asyncio.run(newest(broker.bootstrap)) is None  # nothing announced yet
        for k in range(4):
            publish(broker.bootstrap, topology.MODEL_RELEASES.name,
                    Announcement(f"v{k}", f"/models/v{k}", "0" * 64, float(k)))
        record = asyncio.run(newest(broker.bootstrap))
    assert Announcement.from_json(record.value).version == "v3"


# ---------------------------------------------------------------------------------------------- end to end


class Clicker(threading.Thread):
    """Clicks without pause: every round, one click per user, alternating a v1 item and its v2 twin."""

    def __init__(self, bootstrap: str, sequences: dict[str, list[str]], pause_s: float = 0.15) -> None:
        super().__init__(daemon=True)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        self.sequences = sequences
        self.pause_s = pause_s
        self.rounds = 0
        self.sent = 0
        self.last_ts: dict[str, float] = {}
        self.stopping = threading.Event()
        self.t0 = time.time()

    def run(self) -> None:
        while not self.stopping.is_set():
            r = self.rounds
            for user, items in self.sequences.items():
                item = items[(r // 2) % len(items)]
                item = V2_PREFIX + item if r % 2 else item
                ts = self.t0 + r * 0.01
                value = {"event_id": f"{user}-{r}", "user_id": user, "item_id": item, "ts": ts}
                self.producer.send(topology.CLICKS.name, key=user.encode(), value=json.dumps(value).encode())
                self.last_ts[user] = ts
                self.sent += 1
            self.producer.flush()
            self.rounds += 1
            time.sleep(self.pause_s)

    def wait_rounds(self, n: int, worker: Worker) -> None:
        """Until `n` more rounds are sent (failing if the worker exits meanwhile)."""
        until = self.rounds + n
        while self.rounds < until:
            worker.check_alive()
            time.sleep(0.1)

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(30)
        self.producer.close()  # idempotent


@contextlib.contextmanager
def serving(models: Path, tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, Worker]]:
    """A broker with the pipeline's topics and model-releases (no refresh-requests: the worker declares it with
    its partition count), and a worker serving models/CURRENT; the worker stops first, then the broker."""
    with broker_with_topics(tmp_path / "broker.log", PARTITIONS, extra={"model-releases": 1}) as broker:
        worker = Worker(broker.bootstrap, None, tmp_path / "state", tmp_path / "worker.log", PARTITIONS,
                        models_dir=models)
        try:
            yield broker, worker
        finally:
            worker.stop()


def version_runs(records: list) -> dict[int, list[str]]:
    """Per partition, the model versions in offset order with repeats collapsed."""
    runs: dict[int, list[str]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        version = json.loads(r.value)["model_version"]
        seq = runs.setdefault(r.partition, [])
        if not seq or seq[-1] != version:
            seq.append(version)
    return runs


def is_subsequence(seq: list[str], of: list[str]) -> bool:
    it = iter(of)
    return all(x in it for x in seq)


def test_swap_under_load_is_version_consistent_and_rollback_returns(
        models: Path, ml100k_release: Path, v2_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    v1, v2 = load_release(models / ml100k_release.name), load_release(models / v2_dir.name)
    items = {v1.version: set(v1.item_ids), v2.version: set(v2.item_ids)}
    assert not items[v1.version] & items[v2.version]
    ml = load_dataset(shared_data / "ml-100k")
    sequences = {}
    for user in sorted(ml.sequences, key=int)[:12]:
        both = [i for i in ml.sequences[user] if i in v1.item_index and V2_PREFIX + i in v2.item_index]
        sequences[f"hs-{user}"] = both[:30]
    assert all(len(s) >= 5 for s in sequences.values())
    broken = corrupt_copies(models / v2.version, tmp_path)

    with serving(models, tmp_path) as (broker, worker):
        clicker = Clicker(broker.bootstrap, sequences)
        try:
            pid = worker.proc.pid
            clicker.start()
            read_topic(broker.bootstrap, topology.CANDIDATES.name, lambda rs: len(rs) >= 20, 180, worker)

            # v2 announced mid-stream, as `retrain` does it: CURRENT first, then the announcement
            set_current(models, v2.version)
            publish(broker.bootstrap, topology.MODEL_RELEASES.name, announcement_for(models / v2.version))
            worker.wait_metrics(['mindstream_model_swaps_total{result="ok"} 1.0',
                                 f'mindstream_model_info{{version="{v2.version}"}} 1.0'], 60)
            clicker.wait_rounds(10, worker)

            # broken releases are rejected; v2 keeps serving
            publish(broker.bootstrap, topology.MODEL_RELEASES.name, announcement_for(broken["bad-checksum"]))
            publish(broker.bootstrap, topology.MODEL_RELEASES.name, announcement_for(broken["wrong-dim"]))
            good = announcement_for(models / v1.version)
            publish(broker.bootstrap, topology.MODEL_RELEASES.name,
                    Announcement(good.version, good.uri, "0" * 64, good.created_ts))
            worker.wait_metrics(['mindstream_model_swaps_total{result="rejected"} 3.0',
                                 f'mindstream_model_info{{version="{v2.version}"}} 1.0'], 60)

            # rollback: CURRENT and the running worker return to v1
            done = subprocess.run([sys.executable, "-m", "stream.cli", "rollback", "--models", str(models),
                                   "--bootstrap", broker.bootstrap], cwd=REPO, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, done.stderr
            assert (models / "CURRENT").read_text().strip() == v1.version
            worker.wait_metrics(['mindstream_model_swaps_total{result="ok"} 2.0',
                                 f'mindstream_model_info{{version="{v1.version}"}} 1.0'], 60)
            clicker.wait_rounds(10, worker)
            clicker.stop()
            last_ts = dict(clicker.last_ts)

            def all_in(records: list) -> bool:
                seen = {(v["user_id"], v["event_ts"]) for v in map(lambda r: json.loads(r.value), records)}
                return all((u, ts) in seen for u, ts in last_ts.items())

            interests = read_topic(broker.bootstrap, topology.USER_INTERESTS.name, all_in, 180, worker)
            candidates = read_topic(broker.bootstrap, topology.CANDIDATES.name, all_in, 120, worker)
            text = worker.metrics()
            assert worker.proc.pid == pid and worker.proc.poll() is None  # never restarted
        finally:
            clicker.stop()

    # every valid click was applied (none lost across the swaps) and each user's last click yielded interests
    applied = sum(metric_value(text, "mindstream_events_total", f'status="{s}"') for s in ("ok", "unknown_item"))
    assert applied == clicker.sent
    assert metric_value(text, "mindstream_events_total", 'status="invalid"') == 0
    assert all_in(interests) and all_in(candidates)
    # every candidates message names a version, and every item of it belongs to that version: zero mixed
    by_version = {v1.version: 0, v2.version: 0}
    for r in candidates:
        value = json.loads(r.value)
        assert value["model_version"] in items, value["model_version"]
        assert value["items"], value["user_id"]
        assert {c["item_id"] for c in value["items"]} <= items[value["model_version"]], value["model_version"]
        by_version[value["model_version"]] += 1
    assert by_version[v1.version] > 0 and by_version[v2.version] > 0
    # the switch is atomic: per partition the versions go v1 -> v2 -> v1 (rollback), never back and forth
    for records in (interests, candidates):
        for partition, runs in version_runs(records).items():
            assert is_subsequence(runs, [v1.version, v2.version, v1.version]), (partition, runs)
    # after the rollback, each user's last click is served by v1
    latest = {}
    for r in candidates:
        value = json.loads(r.value)
        latest[value["user_id"]] = value
    assert {v["model_version"] for v in latest.values()} == {v1.version}


def test_refresh_moves_every_stored_user_to_the_new_model_without_a_click(
        models: Path, ml100k_release: Path, v2_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """v1 serves some users' clicks; v2 is announced; `mindstream refresh` then brings every user with stored
    behaviors a v2 candidate list, with no click sent after the swap."""
    v1, v2 = load_release(models / ml100k_release.name), load_release(models / v2_dir.name)
    ml = load_dataset(shared_data / "ml-100k")
    users = {}
    for user in sorted(ml.sequences, key=int)[:6]:
        both = [i for i in ml.sequences[user] if i in v1.item_index and V2_PREFIX + i in v2.item_index]
        # v1 items and their v2 twins: each model knows half of the sequence
        users[f"rf-{user}"] = [item for i in both[:4] for item in (i, V2_PREFIX + i)]
    assert all(len(s) == 8 for s in users.values())

    with serving(models, tmp_path) as (broker, worker):
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        sent = 0
        for user, items in users.items():
            for n, item in enumerate(items):
                value = {"event_id": f"{user}-{n}", "user_id": user, "item_id": item, "ts": 1000.0 + n}
                producer.send(topology.CLICKS.name, key=user.encode(), value=json.dumps(value).encode())
                sent += 1
        producer.flush()
        producer.close()

        def have_all(records: list) -> bool:
            return {json.loads(r.value)["user_id"] for r in records} >= set(users)

        before = read_topic(broker.bootstrap, topology.CANDIDATES.name, have_all, 180, worker)
        assert {json.loads(r.value)["model_version"] for r in before} == {v1.version}

        set_current(models, v2.version)
        publish(broker.bootstrap, topology.MODEL_RELEASES.name, announcement_for(models / v2.version))
        worker.wait_metrics([f'mindstream_model_info{{version="{v2.version}"}} 1.0'], 60)
        # a request for a user with no stored behaviors is counted and changes nothing
        ghost = KafkaProducer(bootstrap_servers=broker.bootstrap)
        ghost.send(topology.REFRESH_REQUESTS.name, key=b"rf-nobody", value=b"{}").get(30)
        ghost.close()
        worker.wait_metrics(['mindstream_refreshes_total{status="no_behaviors"} 1.0'], 60)

        done = subprocess.run([sys.executable, "-m", "stream.cli", "refresh", "--bootstrap", broker.bootstrap,
                               "--rate", "20", "--no-progress"], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"requested {len(users)} of {len(users)} users" in done.stdout, done.stdout

        def all_v2(records: list) -> bool:
            values = [json.loads(r.value) for r in records]
            return {v["user_id"] for v in values if v["model_version"] == v2.version} >= set(users)

        candidates = read_topic(broker.bootstrap, topology.CANDIDATES.name, all_v2, 120, worker)
        text = worker.wait_metrics([f'mindstream_refreshes_total{{status="ok"}} {float(len(users))}'], 60)
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
        request_partitions = consumer.partitions_for_topic(topology.REFRESH_REQUESTS.name)
        consumer.close()

    assert all_v2(candidates)
    assert request_partitions == set(range(PARTITIONS))  # co-partitioned with clicks
    # no click was sent after the swap: the v2 lists come from the stored sequences
    applied = sum(metric_value(text, "mindstream_events_total", f'status="{s}"') for s in ("ok", "unknown_item"))
    assert applied == sent
    for r in candidates:
        value = json.loads(r.value)
        if value["model_version"] == v2.version:
            assert value.get("refresh") is True
            # recomputed from the whole stored sequence: the newest click's ts, v2 items never seen before
            assert value["event_ts"] == 1000.0 + 7, value
            ids = {c["item_id"] for c in value["items"]}
            assert ids and ids <= set(v2.item_ids)
            assert not ids & set(users[value["user_id"]])
