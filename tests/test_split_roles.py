"""Hot swap in the deployed shape (docker-compose): interest and recall in separate workers, two interest workers
in one consumer group, on real components (the embedded Tansu broker, `mindstream worker` subprocesses: Faust,
RocksDB, onnxruntime, hnswlib). One broker and one run serve the module's end-to-end checks: the swap itself,
the consumer-lag gauge, and the RocksDB options of the running workers' tables.

v1 is the session's ml-100k release (item ids "1", "2", ..., d=32); v2 (tests/conftest.py) has every item id
prefixed "b:" and d=16, so an item of the other version, or interests searched in the other version's index,
cannot go unnoticed. Each user clicks v1 items and their v2 twins alternately, so both versions serve everyone.

The unit tests at the end cover what the run cannot force: `request_from` given interests of an unknown version
or of another dimension, and how many releases the registry keeps.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from infra.click_load import PacedProducer, click_stream, sequences, table_state, warm_up
from infra.measure import metric_samples, metric_value
from infra.processes import wait_until
from model.release import load_release, set_current
from stream import topology
from stream.commands.announce import announcement_for, publish
from stream.config import MIB, RocksDBSettings, Settings
from stream.messages import UserInterests
from stream.topic_reader import TopicLog
from stream.worker.app import app_id
from stream.worker.recall import request_from
from stream.worker.releases import ReleaseRegistry
from tests.conftest import V2_PREFIX, two_version_models
from tests.streamkit import Worker, broker_with_topics, read_topic

PARTITIONS = 2
USERS, PER_USER = 12, 20  # PER_USER <= max_len (20): the ground truth is every click, none ages out
RATE = 8.0  # clicks/s: the stream lasts ~30 s, long enough for a swap in the middle of it
INTEREST_CHANGELOG = topology.BEHAVIORS.changelog(app_id(Settings(role="interest")))


def lag_series(text: str, topic: str) -> dict[int, float]:
    """partition -> value of mindstream_consumer_lag{topic=...} in a worker's metrics text."""
    return {int(labels["partition"]): value for labels, value in metric_samples(text, "mindstream_consumer_lag")
            if labels["topic"] == topic}


@dataclass
class Run:
    v1: str
    v2: str
    items: dict[str, set[str]]
    truth: dict[str, list[str]]
    got: dict[str, list[str]]
    candidates: list
    last_ts: dict[str, float]
    metrics: dict[str, str]  # worker name -> metrics text once everything was processed
    lag: dict[str, dict[int, float]]  # interest worker -> its clicks partitions' lag when B had joined
    drained_lag: dict[str, dict[int, float]]  # worker -> its source topic's lag after the run
    state_dirs: dict[str, Path]
    swapped_mid_stream: bool


@pytest.fixture(scope="module")
def run(ml100k_release: Path, v2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("split-roles")
    models = two_version_models(tmp / "models", ml100k_release, v2_dir)
    v1, v2 = load_release(models / ml100k_release.name), load_release(models / v2_dir.name)
    # movies both versions know, each followed by its v2 twin: consecutive clicks alternate versions
    common = [i for i in sorted(v1.item_index, key=int) if V2_PREFIX + i in v2.item_index][:60]
    items = [x for i in common for x in (i, V2_PREFIX + i)]
    assert len(items) == 120

    with broker_with_topics(tmp / "broker.log", PARTITIONS, extra={"model-releases": 1}) as broker:
        def worker(name: str, role: str) -> Worker:
            return Worker(broker.bootstrap, None, tmp / f"state-{name}", tmp / f"{name}.log", PARTITIONS,
                          extra=("--role", role), models_dir=models)

        changelog = TopicLog(broker.bootstrap, INTEREST_CHANGELOG)
        clicks = topology.CLICKS.name
        a, r = worker("interest-a", "interest"), worker("recall", "recall")
        workers = [a, r]
        producer = None
        try:
            # A alone holds both clicks partitions ...
            log = warm_up(broker.bootstrap, clicks, changelog, workers, users=4, item=items[0],
                          ready=lambda: set(lag_series(a.metrics(), topology.CLICKS.name)) == {0, 1})
            # ... until B joins its group: one partition moves, and A must stop exporting its lag
            b = worker("interest-b", "interest")
            workers.append(b)

            def split() -> bool:
                return b.serving() and len(lag_series(a.metrics(), topology.CLICKS.name)) == 1 \
                    and len(lag_series(b.metrics(), topology.CLICKS.name)) == 1

            assert wait_until(split, 180, workers), "B never took a clicks partition from A"
            lag = {"a": lag_series(a.metrics(), clicks), "b": lag_series(b.metrics(), clicks)}

            t0 = time.time() - 100_000  # after the warm-up clicks (now - 200_000), before any real click
            producer = PacedProducer(broker.bootstrap, clicks, click_stream(USERS, PER_USER, items, t0, prefix="sr"),
                                     RATE)
            producer.start()
            assert wait_until(lambda: len(producer.log.clicks) >= USERS * PER_USER // 3, 120, workers)
            # v2 is announced mid-stream, as `retrain` does it: CURRENT first, then the announcement
            set_current(models, v2.version)
            publish(broker.bootstrap, topology.MODEL_RELEASES.name, announcement_for(models / v2.version))
            for w in workers:
                w.wait_metrics(['mindstream_model_swaps_total{result="ok"} 1.0',
                                f'mindstream_model_info{{version="{v2.version}"}} 1.0'], 120)
            swapped_mid_stream = producer.is_alive()
            producer.join(300)
            assert not producer.is_alive() and not producer.log.errors, producer.log.errors[:3]
            log = log.merge(producer.log)
            truth = log.ground_truth(max(v1.max_len, v2.max_len))

            def applied() -> bool:
                got = sequences(table_state(changelog.poll()))
                return all(got.get(u) == s for u, s in truth.items())

            wait_until(applied, 180, workers)  # the assertion on lost clicks is the test's
            got = sequences(table_state(changelog.records))
            last_ts = {}
            for c in producer.log.clicks:
                last_ts[c.user_id] = max(c.ts, last_ts.get(c.user_id, c.ts))

            def served(records: list) -> bool:
                seen = {(v["user_id"], v["event_ts"]) for v in (json.loads(x.value) for x in records)}
                return all((u, ts) in seen for u, ts in last_ts.items())

            candidates = read_topic(broker.bootstrap, topology.CANDIDATES.name, served, 180, r)

            def drained() -> bool:
                return all(v == 0 for w, topic in ((a, clicks), (b, clicks), (r, topology.USER_INTERESTS.name))
                           for v in lag_series(w.metrics(), topic).values())

            wait_until(drained, 60, workers)  # the lag sampler runs every 5 s and commits every ~3 s
            drained_lag = {"a": lag_series(a.metrics(), clicks), "b": lag_series(b.metrics(), clicks),
                           "recall": lag_series(r.metrics(), topology.USER_INTERESTS.name)}
            yield Run(v1.version, v2.version, {v1.version: set(v1.item_ids), v2.version: set(v2.item_ids)}, truth,
                      got, candidates, last_ts, {w.name: w.metrics() for w in workers}, lag, drained_lag,
                      {"a": tmp / "state-interest-a", "b": tmp / "state-interest-b", "recall": tmp / "state-recall"},
                      swapped_mid_stream)
        finally:
            if producer is not None:
                producer.stop()
            changelog.close()
            for w in workers:
                w.stop()


def test_split_roles_swap_every_candidates_item_is_of_its_version_and_no_click_is_lost(run: Run) -> None:
    assert run.swapped_mid_stream, "the stream ended before every worker had swapped"
    checked = {run.v1: 0, run.v2: 0}
    mixed = 0
    for record in run.candidates:
        value = json.loads(record.value)
        version = value["model_version"]
        assert version in checked, version
        assert value["items"], value["user_id"]
        if not {c["item_id"] for c in value["items"]} <= run.items[version]:
            mixed += 1
        checked[version] += 1
    lost = sum(sum((Counter(s) - Counter(run.got.get(u, []))).values()) for u, s in run.truth.items())
    print(f"\nsplit roles, hot swap mid-stream: candidates messages checked per version {checked}, "
          f"mixed {mixed}; clicks lost {lost} of {sum(map(len, run.truth.values()))}")
    assert mixed == 0
    assert checked[run.v1] > 0 and checked[run.v2] > 0
    # per partition (one interest worker's output at a time) the version switches once: v1 -> v2, never back
    runs: dict[int, list[str]] = {}
    for record in sorted(run.candidates, key=lambda r: (r.partition, r.offset)):
        version = json.loads(record.value)["model_version"]
        if runs.get(record.partition, [None])[-1] != version:
            runs.setdefault(record.partition, []).append(version)
    assert all(versions in ([run.v1], [run.v2], [run.v1, run.v2]) for versions in runs.values()), runs
    # every user's behavior sequence, as any worker restores it, is every click sent: none lost, none twice
    assert run.got == run.truth, {u: (s, run.got.get(u)) for u, s in run.truth.items() if run.got.get(u) != s}
    # and every user's last click was served, by the new version
    latest = {}
    for record in run.candidates:
        value = json.loads(record.value)
        if value["event_ts"] == run.last_ts.get(value["user_id"]):
            latest[value["user_id"]] = value["model_version"]
    assert latest == {u: run.v2 for u in run.last_ts}


def test_split_roles_swap_both_roles_report_the_new_version(run: Run) -> None:
    for name, text in run.metrics.items():
        info = [line for line in text.splitlines() if line.startswith("mindstream_model_info{")]
        assert info == [f'mindstream_model_info{{version="{run.v2}"}} 1.0'], (name, info)  # v1's series is gone
    # each role did its own part: the interest workers ran the tower, the recall worker searched
    a, b, r = (run.metrics[n] for n in ("interest-a", "interest-b", "recall"))
    assert metric_value(a, "mindstream_user_tower_seconds_count") > 0
    assert metric_value(b, "mindstream_user_tower_seconds_count") > 0
    assert metric_value(r, "mindstream_user_tower_seconds_count") == 0
    assert metric_value(r, "mindstream_recall_seconds_count") > 0
    assert metric_value(a, "mindstream_recall_seconds_count") == 0


def test_split_roles_lag_gauge_follows_the_assignment_and_drains_to_zero(run: Run) -> None:
    # when B joined, the partition it took left A's metrics: summed over workers, each partition counts once
    assert set(run.lag["a"]) | set(run.lag["b"]) == {0, 1} and not set(run.lag["a"]) & set(run.lag["b"])
    # after the run, on the real broker: highwater minus committed is 0 on every partition, each exported once
    assert run.drained_lag["a"] and run.drained_lag["b"] and run.drained_lag["recall"]
    assert set(run.drained_lag["a"]) | set(run.drained_lag["b"]) == {0, 1}
    assert set(run.drained_lag["recall"]) == {0, 1}
    assert all(v == 0 for lags in run.drained_lag.values() for v in lags.values()), run.drained_lag


def test_split_roles_tables_run_with_the_bounded_rocksdb_options(run: Run) -> None:
    """RocksDB writes the options a database was opened with to OPTIONS-* in its directory: read those of
    every table partition the running workers opened (behaviors on the interest workers, latest-candidates on
    the recall worker)."""
    bounds = RocksDBSettings()
    for name, state in run.state_dirs.items():
        databases = {p.parent for p in state.rglob("OPTIONS-*")}
        assert len(databases) >= 1, (name, list(state.rglob("*"))[:20])
        for db in databases:
            text = sorted(db.glob("OPTIONS-*"))[-1].read_text()
            assert re.search(r"^\s*write_buffer_size=(\d+)$", text, re.M).group(1) == str(bounds.write_buffer_mib
                                                                                        * MIB), db
            assert re.search(r"^\s*max_write_buffer_number=(\d+)$", text, re.M).group(1) == str(
                bounds.max_write_buffers), db
        table = topology.LATEST_CANDIDATES.name if name == "recall" else topology.BEHAVIORS.name
        assert all(table in str(db) for db in databases), (name, databases)


# ---------------------------------------------------------------------------------------------- units


def interests_event(version: str, vectors: list[list[float]], user: str = "u1") -> SimpleNamespace:
    value = UserInterests(user, version, np.asarray(vectors, dtype=np.float32), 1, 5.0, 6.0, ["1"])
    return SimpleNamespace(value=value.to_json(), message=SimpleNamespace(topic=topology.USER_INTERESTS.name,
                                                                                     partition=0, offset=7))


@pytest.fixture
def registry(models: Path) -> ReleaseRegistry:
    registry = ReleaseRegistry(models)
    registry.load_initial()
    return registry


def test_request_from_searches_the_stamped_version_and_skips_what_it_cannot(
        registry: ReleaseRegistry, ml100k_release: Path, v2_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    v1 = registry.current
    ok = request_from(interests_event(v1.version, np.ones((2, v1.d)).tolist()), registry)
    assert ok is not None and ok.release is v1 and ok.interests.shape == (2, v1.d) and ok.event_ts == 5.0
    # a version that is not served but is under models/ is loaded for it (a message from before a swap)
    v2 = request_from(interests_event(v2_dir.name, np.ones((1, 16)).tolist()), registry)
    assert v2 is not None and v2.release.version == v2_dir.name and v2.release.d == 16
    # unknown version: skipped, logged, and not searched in the current index
    assert request_from(interests_event("no-such-version", np.ones((2, v1.d)).tolist()), registry) is None
    assert "no release no-such-version" in caplog.text
    # v1's dimension stamped with v2's version: the vectors cannot be searched in v2's index
    assert request_from(interests_event(v2_dir.name, np.ones((2, v1.d)).tolist()), registry) is None
    assert f"have d={v1.d}, release {v2_dir.name} has d=16" in caplog.text
    # a path as a version is never looked up on disk
    assert request_from(interests_event("../" + v1.version, np.ones((2, v1.d)).tolist()), registry) is None


def test_registry_keeps_the_three_newest_releases_and_always_the_current(ml100k_release: Path,
                                                                        tmp_path: Path) -> None:
    release = load_release(ml100k_release)
    registry = ReleaseRegistry(tmp_path, keep=3)  # an empty models dir: an evicted version cannot come back
    versions = [f"v{k}" for k in range(5)]
    for v in versions:
        registry.serve(SimpleNamespace(**{**release.__dict__, "version": v}))
    assert registry.current.version == "v4"
    assert [v for v in versions if registry.get(v) is not None] == ["v2", "v3", "v4"]
    # a version served again moves to the newest end: it is the current one and is not evicted
    registry.serve(SimpleNamespace(**{**release.__dict__, "version": "v2"}))
    registry.serve(SimpleNamespace(**{**release.__dict__, "version": "v5"}))
    assert [v for v in (*versions, "v5") if registry.get(v) is not None] == ["v2", "v4", "v5"]
    assert registry.current.version == "v5"
