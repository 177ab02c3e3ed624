"""Failure paths wired through real parts: a release whose ONNX file does not load although every checksum matches;
a release whose tower raises for one user's input, served by a real worker (one event dead-lettered
`processing_error`, the rest served); and the consumer-lag sampler's arithmetic (its value on the real broker
is checked by tests/test_split_roles.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry, Gauge

from infra.measure import metric_value
from model.release import ReleaseError, load_release
from stream import topology
from stream.commands.announce import announcement_for
from stream.monitoring.lag import LagSampler
from stream.worker.hotswap import REJECTED, handle
from stream.worker.releases import ReleaseRegistry
from tests.streamkit import Worker, broker_with_topics, read_topic

PARTITIONS = 2
POISON = "poison"


def reseal(release: Path, version: str) -> None:
    """Give a copied release its own version and the checksums of the files it now holds."""
    manifest = json.loads((release / "manifest.json").read_text())
    manifest["version"] = version
    manifest["files"] = {name: hashlib.sha256((release / name).read_bytes()).hexdigest() for name in manifest["files"]}
    (release / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------------------------------------- ONNX load


def test_a_tower_that_onnxruntime_cannot_load_is_rejected_although_its_checksums_match(
        ml100k_release: Path, tmp_path: Path) -> None:
    broken = tmp_path / "truncated-onnx"
    shutil.copytree(ml100k_release, broken)
    onnx = broken / "user_tower.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])  # a copy cut short
    reseal(broken, "truncated-onnx")
    with pytest.raises(ReleaseError, match="user_tower.onnx: onnxruntime cannot load it"):
        load_release(broken)
    # announced to a serving worker's registry: rejected, the serving version stays
    registry = ReleaseRegistry(ml100k_release.parent)
    serving = registry.load_initial(ml100k_release).version
    assert asyncio.run(handle(announcement_for(broken).to_json(), registry, tmp_path)) == REJECTED
    assert registry.current.version == serving


# ---------------------------------------------------------------------------------------------- a tower that raises


def poisoned_copy(release: Path, where: Path) -> Path:
    """The release with one more occupation ("poison") in its profile vocabulary than its ONNX tower's profile
    embedding table has rows: it passes every check of load_release (checksums, shapes, index against embeddings,
    smoke inference), and onnxruntime's Gather raises for any user whose profile holds the extra value. A real
    kind of defect: a tower exported from another vocabulary than the manifest's."""
    out = where / "poisoned"
    shutil.copytree(release, out)
    manifest = json.loads((out / "manifest.json").read_text())
    occupations = manifest["profile_fields"]["occupation"]
    occupations[POISON] = max(occupations.values()) + 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    reseal(out, "poisoned")
    return out


def test_poisoned_release_loads_and_its_tower_raises_for_the_extra_value_only(ml100k_release: Path,
                                                                             tmp_path: Path) -> None:
    release = load_release(poisoned_copy(ml100k_release, tmp_path))
    history = release.encode_history(["1", "2"])[None]
    interests, n = release.user_tower(history, release.encode_profile({"occupation": "writer"})[None])
    assert interests.shape == (1, release.K, release.d) and 1 <= n[0] <= release.K
    with pytest.raises(Exception, match="Gather"):
        release.user_tower(history, release.encode_profile({"occupation": POISON})[None])


def test_a_processing_error_costs_one_event_not_the_worker(ml100k_release: Path, tmp_path: Path) -> None:
    poisoned = poisoned_copy(ml100k_release, tmp_path)
    users = [f"pe-{u}" for u in range(8)]
    now = time.time()
    clicks: list[tuple[str, dict]] = []
    for step in range(4):
        for n, user in enumerate(users):
            clicks.append((user, {"event_id": f"{user}-{step}", "user_id": user, "item_id": str(1 + n * 4 + step),
                                  "ts": now + step}))
        if step == 1:  # in the middle of the stream, among the other users' clicks
            clicks.append(("pe-bad", {"event_id": "bad-0", "user_id": "pe-bad", "item_id": "1", "ts": now,
                                      "profile": {"occupation": POISON}}))
    last_ts = {user: now + 3 for user in users}
    with broker_with_topics(tmp_path / "broker.log", PARTITIONS) as broker:
        worker = Worker(broker.bootstrap, poisoned, tmp_path / "state", tmp_path / "worker.log", PARTITIONS,
                        models_dir=tmp_path / "no-models")
        try:
            pid = worker.pid
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
            for user, value in clicks:
                producer.send(topology.CLICKS.name, key=user.encode(), value=json.dumps(value).encode())
            producer.close()

            def served(records: list) -> bool:
                latest = {v["user_id"]: v["event_ts"] for v in (json.loads(r.value) for r in records)}
                return all(latest.get(u) == ts for u, ts in last_ts.items())

            candidates = read_topic(broker.bootstrap, topology.CANDIDATES.name, served, 180, worker)
            dlq = read_topic(broker.bootstrap, topology.CLICKS_DLQ.name,
                             lambda rs: any(json.loads(r.value)["reason"] == "processing_error" for r in rs), 60,
                             worker)
            text = worker.metrics()
            assert worker.alive() and worker.pid == pid
        finally:
            worker.stop()

    errors = [json.loads(r.value) for r in dlq if json.loads(r.value)["reason"] == "processing_error"]
    assert len(errors) == 1, errors
    assert json.loads(base64.b64decode(errors[0]["raw"]))["event_id"] == "bad-0"
    assert "Gather" in errors[0]["error"]
    assert metric_value(text, "mindstream_dead_letters_total", 'reason="processing_error"') == 1
    # every other click was served: each user's list comes from all 4 of its clicks, the poisoned user has none
    published = {json.loads(r.value)["user_id"] for r in candidates}
    assert published == set(users)
    assert metric_value(text, "mindstream_events_total", 'status="ok"') == len(clicks)


# ---------------------------------------------------------------------------------------------- lag sampler


class FakeConsumer:
    """A Faust consumer's surface the sampler reads: assignment, highwaters, committed offsets, positions."""

    def __init__(self) -> None:
        self.assigned: set = set()
        self.highwater: dict = {}
        self._committed_offset: dict = {}
        self.positions: dict = {}

    def assignment(self) -> set:
        return set(self.assigned)

    async def highwaters(self, *tps: object) -> dict:
        return {tp: self.highwater.get(tp) for tp in tps}

    async def position(self, tp: object) -> int | None:
        return self.positions.get(tp)



def test_lag_sampler_is_highwater_minus_committed_and_forgets_revoked_partitions() -> None:
    from aiokafka import TopicPartition

    registry = CollectorRegistry()
    gauge = Gauge("lag_under_test", "lag", ["topic", "partition"], registry=registry)
    sampler = LagSampler(gauge)
    c = FakeConsumer()
    p0, p1, p2 = (TopicPartition(topology.CLICKS.name, p) for p in range(3))
    changelog = TopicPartition(topology.BEHAVIORS.changelog("mindstream"), 0)
    c.assigned = {p0, p1, p2, changelog}
    c.highwater = {p0: 120, p1: 50, p2: 7, changelog: 999}
    c._committed_offset = {p0: 100, p1: 50}
    c.positions = {p2: 3}  # never committed yet: the fetch position stands in

    def value(partition: int) -> float | None:
        return registry.get_sample_value("lag_under_test", {"topic": topology.CLICKS.name, "partition": str(partition)})

    clicks = topology.CLICKS.name
    assert asyncio.run(sampler.sample(c)) == {(clicks, 0): 20, (clicks, 1): 0, (clicks, 2): 4}
    assert (value(0), value(1), value(2)) == (20, 0, 4)
    # Faust's changelog is not an agent's source: no series for it
    assert registry.get_sample_value("lag_under_test", {"topic": changelog.topic, "partition": "0"}) is None

    # a rebalance takes partition 2 away; partition 0 catches up; a highwater not known yet is skipped
    c.assigned = {p0, p1, changelog}
    c._committed_offset[p0] = 120
    c.highwater[p1] = None
    assert asyncio.run(sampler.sample(c)) == {(topology.CLICKS.name, 0): 0}
    assert value(0) == 0 and value(1) is None and value(2) is None  # revoked/unknown: removed, not stale
    # a committed offset past the listed end (the broker lists a batch's base offset) is lag 0, not negative
    c.assigned = {p1}
    c.highwater[p1] = 40
    assert asyncio.run(sampler.sample(c)) == {(topology.CLICKS.name, 1): 0}
