"""End to end on real components: the embedded Tansu broker, `mindstream worker` (Faust, RocksDB tables,
onnxruntime, hnswlib) as a subprocess, and a MIND release trained on MovieLens-100K.

One broker and one worker serve the whole module: clicks of every scenario are produced together, the
outputs collected once, and each test asserts its part. The restart test runs last.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from infra.broker import EmbeddedBroker
from infra.measure import metric_samples, metric_value
from infra.processes import wait_until
from model.data import load_dataset
from model.release import load_release
from stream import topology
from tests.schemas import errors, validate_records
from tests.streamkit import Worker, broker_with_topics
from tests.streamkit import read_topic as read_any_topic

PARTITIONS = 2
TOP_N = 100


def read_topic(bootstrap: str, topic: str, *args, **kwargs) -> list:
    """tests.streamkit.read_topic, and every record read validates against docs/schemas/<topic>.schema.json."""
    return validate_records(topic, read_any_topic(bootstrap, topic, *args, **kwargs))


def values(records: list) -> list[dict]:
    return [json.loads(r.value) for r in records]


# ---------------------------------------------------------------------------------------------- scenario


@pytest.fixture(scope="module")
def movielens(shared_data: Path):
    return load_dataset(shared_data / "ml-100k")


def genre_items(movielens, release, genre: str, n: int) -> list[str]:
    """The `n` most clicked items whose only genre is `genre` and that the model knows."""
    pop = Counter(i for seq in movielens.sequences.values() for i in seq)
    items = [i for i, gs in movielens.item_categories.items() if gs == [genre] and i in release.item_index]
    return sorted(items, key=lambda i: (-pop[i], i))[:n]


class Scenario:
    """Every click the module sends, and what each part expects."""

    def __init__(self, movielens, release) -> None:
        self.version = release.version
        now = time.time()
        self.created = now  # before any click is sent: no output of the run can be older
        self.clicks: list[tuple[bytes | None, bytes]] = []
        self.valid: Counter[str] = Counter()  # user -> valid clicks sent (what its sequence must hold)
        self.last_ts: dict[str, float] = {}  # user -> ts of its last click: its final interests carry it
        n = 0

        def click(user: str, item: str, **extra) -> None:
            nonlocal n
            n += 1
            value = {"event_id": f"e{n}", "user_id": user, "item_id": item, "ts": now - 1000 + n, **extra}
            self.clicks.append((user.encode(), json.dumps(value).encode()))
            self.valid[user] += 1
            self.last_ts[user] = value["ts"]

        # real users: the last 10 clicks of 40 MovieLens users, with their profile
        self.replayed = sorted(movielens.sequences, key=int)[:40]
        for user in self.replayed:
            for item in movielens.sequences[user][-10:]:
                click(f"ml-{user}", item, profile=movielens.user_profile.get(user, {}))
        # one genre; two genres interleaved (items whose only genre is that one). Genres the small 1-epoch
        # fixture model separates: on it, users of the rarest genres (Horror, Documentary) still get the
        # popular Action/Thriller titles.
        self.genre = "Action"
        self.a_items = genre_items(movielens, release, self.genre, 12)
        for item in self.a_items:
            click("one-genre", item)
        self.two_genres = ("Comedy", "Drama")
        first = genre_items(movielens, release, self.two_genres[0], 12)
        second = genre_items(movielens, release, self.two_genres[1], 12)
        for a, b in zip(first, second, strict=True):
            click("two-genres", a)
            click("two-genres", b)
        # bad records interleaved with valid clicks of one user
        good = movielens.sequences["1"][:12]
        oversized = json.dumps({"user_id": "dlq-user", "item_id": good[0], "ts": now, "pad": "x" * 20000}).encode()
        self.bad: dict[str, tuple[bytes | None, bytes]] = {
            "not_json": (b"dlq-user", b"{this is not json"),
            "not_utf8": (b"dlq-user", b"\xff\xfe\x00"),
            "missing_field": (b"dlq-user", json.dumps({"user_id": "dlq-user", "ts": now}).encode()),
            "wrong_type": (b"dlq-user", json.dumps({"user_id": "dlq-user", "item_id": 7, "ts": now}).encode()),
            "oversized": (b"dlq-user", oversized),
        }
        bad = list(self.bad.values())
        for i, item in enumerate(good):
            click("dlq-user", item)
            if i < len(bad):
                self.clicks.append(bad[i])
        click("dlq-user", "no-such-movie")  # unknown item: valid, kept, counted, not dead-lettered
        self.unknown_only_user = "unknown-only"
        click(self.unknown_only_user, "no-such-movie-either")
        # a redelivered click changes nothing
        self.clicks.append(self.clicks[0])
        # what producers send is what the clicks schema describes, and the malformed records are not
        bad = set(self.bad.values())
        for key, raw in self.clicks:
            if (key, raw) not in bad:
                assert not errors(topology.CLICKS.name, json.loads(raw)), raw
        for reason in ("missing_field", "wrong_type"):
            assert errors(topology.CLICKS.name, json.loads(self.bad[reason][1])), reason

    @property
    def users(self) -> set[str]:
        return set(self.valid)

    def expected_lengths(self, max_len: int) -> dict[str, int]:
        """user -> length of its behavior sequence once every click is in (users with interests only)."""
        return {u: min(n, max_len) for u, n in self.valid.items() if u != self.unknown_only_user}

    def all_in(self, interests: list) -> bool:
        """Every user's last click has been turned into interests."""
        last = {v["user_id"]: v["event_ts"] for v in values(interests)}
        return all(last.get(u) == ts for u, ts in self.last_ts.items() if u != self.unknown_only_user)


@pytest.fixture(scope="module")
def pipeline(ml100k_release: Path, movielens, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("pipeline")
    release = load_release(ml100k_release)
    scenario = Scenario(movielens, release)
    with EmbeddedBroker(log_path=str(tmp / "broker.log")) as broker:
        # as kafka-init does in docker-compose: the topics exist, with the worker's partition count, before
        # the first click (the broker would auto-create `clicks` with its own default)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(t.name, PARTITIONS, 1) for t in (topology.CLICKS, topology.USER_INTERESTS,
                                                                        topology.CANDIDATES, topology.CLICKS_DLQ)])
        admin.close()
        worker = Worker(broker.bootstrap, ml100k_release, tmp / "state-1", tmp / "worker-1.log", PARTITIONS, TOP_N)
        try:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
            for key, value in scenario.clicks:
                producer.send(topology.CLICKS.name, key=key, value=value)
            producer.flush()
            producer.close()
            expected = scenario.users - {scenario.unknown_only_user}

            interests = read_topic(broker.bootstrap, topology.USER_INTERESTS.name,
                                   scenario.all_in,
                                   timeout_s=180, worker=worker)
            candidates = read_topic(broker.bootstrap, topology.CANDIDATES.name,
                                    lambda rs: expected <= {json.loads(r.value)["user_id"] for r in rs},
                                    timeout_s=60)
            # every bad record; read after every user's interests are out, so a dead-lettered unknown item
            # (which must not happen) would be there too
            dlq = read_topic(broker.bootstrap, topology.CLICKS_DLQ.name, lambda rs: len(rs) >= len(scenario.bad),
                             timeout_s=30)
            yield {"broker": broker, "worker": worker, "scenario": scenario, "release": release, "tmp": tmp,
                   "interests": interests, "candidates": candidates, "dlq": dlq, "movielens": movielens,
                   "metrics": worker.metrics(), "read_at": time.time()}
        finally:
            worker.stop()


def final_lengths(records: list) -> dict[str, int]:
    """user -> seq_len of the user's most recent user-interests message."""
    out: dict[str, int] = {}
    for r in records:
        v = json.loads(r.value)
        out[v["user_id"]] = v["seq_len"]
    return out


def latest_by_user(records: list) -> dict[str, dict]:
    return {v["user_id"]: v for v in values(records)}


# ---------------------------------------------------------------------------------------------- tests


def test_every_user_with_a_valid_click_gets_candidates_of_the_model_version(pipeline: dict) -> None:
    s: Scenario = pipeline["scenario"]
    latest = latest_by_user(pipeline["candidates"])
    assert set(latest) == s.users - {s.unknown_only_user}
    # every valid click is in its user's sequence exactly once (the redelivered one is not)
    assert final_lengths(pipeline["interests"]) == s.expected_lengths(pipeline["release"].max_len)
    for user, value in latest.items():
        assert value["model_version"] == s.version
        items = value["items"]
        assert len(items) == TOP_N, user
        scores = [c["score"] for c in items]
        assert scores == sorted(scores, reverse=True), user
        assert len({c["item_id"] for c in items}) == TOP_N
        # published by this run, on the worker's clock: after the first click was sent, before it was read back
        # (the clicks' own ts are set ~1000 s in the past, so published_ts >= event_ts would prove nothing)
        assert s.created <= value["published_ts"] <= pipeline["read_at"], value
    # the key is the user everywhere
    for r in pipeline["candidates"]:
        assert r.key.decode() == json.loads(r.value)["user_id"]


def test_interests_follow_the_contract_and_history_is_excluded(pipeline: dict) -> None:
    s: Scenario = pipeline["scenario"]
    release = pipeline["release"]
    interests = latest_by_user(pipeline["interests"])
    candidates = latest_by_user(pipeline["candidates"])
    for user in s.replayed[:5]:
        v = interests[f"ml-{user}"]
        assert v["model_version"] == s.version and v["seq_len"] == 10
        assert 1 <= len(v["interests"]) <= release.K
        assert all(len(vec) == release.d for vec in v["interests"])
        # computed in this run, before the candidates searched from it were published
        assert s.created <= v["computed_ts"] <= candidates[f"ml-{user}"]["published_ts"] <= pipeline["read_at"]
        history = set(pipeline["movielens"].sequences[user][-10:])
        assert not history & {c["item_id"] for c in candidates[f"ml-{user}"]["items"]}


def test_a_user_with_no_known_item_gets_no_interest_update(pipeline: dict) -> None:
    s: Scenario = pipeline["scenario"]
    assert s.unknown_only_user not in {v["user_id"] for v in values(pipeline["interests"])}


def genre_share(items: list[dict], movielens, genre: str) -> float:
    return sum(genre in movielens.item_categories.get(c["item_id"], []) for c in items) / len(items)


def test_one_genre_user_gets_candidates_dominated_by_that_genre(pipeline: dict) -> None:
    s: Scenario = pipeline["scenario"]
    ml = pipeline["movielens"]
    items = latest_by_user(pipeline["candidates"])["one-genre"]["items"]
    share = genre_share(items[:20], ml, s.genre)
    base = sum(s.genre in gs for gs in ml.item_categories.values()) / len(ml.item_categories)
    assert share >= 0.5 and share > 3 * base, (share, base)


def test_two_genre_user_gets_candidates_of_both(pipeline: dict) -> None:
    s: Scenario = pipeline["scenario"]
    ml = pipeline["movielens"]
    items = latest_by_user(pipeline["candidates"])["two-genres"]["items"]
    a, b = s.two_genres
    only_a = sum(a in ml.item_categories[c["item_id"]] and b not in ml.item_categories[c["item_id"]] for c in items)
    only_b = sum(b in ml.item_categories[c["item_id"]] and a not in ml.item_categories[c["item_id"]] for c in items)
    assert only_a >= 15 and only_b >= 15, (only_a, only_b)


def test_bad_events_are_dead_lettered_and_the_valid_ones_around_them_processed(pipeline: dict) -> None:
    s: Scenario = pipeline["scenario"]
    dlq = pipeline["dlq"]
    by_reason = {json.loads(r.value)["reason"]: r for r in dlq}
    for reason, (key, raw) in s.bad.items():
        record = by_reason[reason]
        value = json.loads(record.value)
        assert record.key == key
        assert base64.b64decode(value["raw"]) == raw
        assert value["error"] and isinstance(value["ts"], float)
    # a click on an item the model does not know is valid: counted below, never dead-lettered
    assert not [r for r in dlq if json.loads(r.value)["reason"] == "unknown_item"]
    # every valid click of the user, the unknown item included, is in the sequence
    assert final_lengths(pipeline["interests"])["dlq-user"] == s.valid["dlq-user"] == 13
    text = pipeline["metrics"]
    assert f'mindstream_events_total{{status="invalid"}} {float(len(s.bad))}' in text
    assert 'mindstream_events_total{status="unknown_item"} 2.0' in text
    assert 'mindstream_events_total{status="duplicate"} 1.0' in text
    assert f'mindstream_model_info{{version="{s.version}"}} 1.0' in text
    assert 'mindstream_dead_letters_total{reason="oversized"} 1.0' in text


def readme_consumer() -> str:
    """The Python block of the README's "Consuming candidates downstream" section."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Consuming candidates downstream", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_consumer_prints_the_candidate_lists(pipeline: dict) -> None:
    s: Scenario = pipeline["scenario"]
    out = subprocess.run([sys.executable, "-c", readme_consumer()], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "KAFKA_BOOTSTRAP": pipeline["broker"].bootstrap})
    assert out.returncode == 0, out.stderr
    published: dict[str, list[list[str]]] = {}  # user -> the item ids of each of its lists
    for v in values(pipeline["candidates"]):  # every list the worker published, read when the fixture drained it
        published.setdefault(v["user_id"], []).append([c["item_id"] for c in v["items"]])
    printed = [re.fullmatch(r"user (\S+) \(model (\S+), (\d+) items\): (.*)", line) for line in out.stdout.splitlines()]
    assert printed and all(printed), out.stdout[:2000]
    assert {m[1] for m in printed} == s.users - {s.unknown_only_user}
    for m in printed:
        assert m[2] == s.version and int(m[3]) == TOP_N
        top = [entry.split(" (")[0] for entry in m[4].split("  ")]
        assert len(top) == 5 and any(ids[:5] == top for ids in published[m[1]]), m[0]


def test_a_backlog_is_taken_in_batches_and_every_stage_is_observed_per_batch(pipeline: dict) -> None:
    """The scenario's clicks arrive together: the interest agent takes what each fetch brought as one batch
    (stream/worker/batching.py), and /metrics splits each batch's time into its stages."""
    m = pipeline["metrics"]
    consumed = sum(v for _, v in metric_samples(m, "mindstream_events_total"))
    batches = metric_value(m, "mindstream_stage_seconds_count", 'stage="parse_table"')
    assert 1 <= batches < consumed, (batches, consumed)
    for stage in ("tower", "search", "produce"):  # a batch with a known item runs each once
        assert 1 <= metric_value(m, "mindstream_stage_seconds_count", f'stage="{stage}"') <= batches, stage
    assert metric_value(m, "mindstream_fetch_wait_seconds_count") >= consumed - len(pipeline["scenario"].bad)


def test_restart_keeps_every_behavior_sequence(pipeline: dict) -> None:
    s: Scenario = pipeline["scenario"]
    broker = pipeline["broker"]
    assert pipeline["worker"].stop() == 0  # SIGTERM: a clean stop
    before = {v["user_id"]: v for v in values(pipeline["interests"])}
    # a fresh state directory: the sequences must come back from the changelog alone
    worker = Worker(broker.bootstrap, pipeline["release"].path, pipeline["tmp"] / "state-2",
                    pipeline["tmp"] / "worker-2.log", PARTITIONS, TOP_N)
    try:
        users = sorted(u for u in before if u != s.unknown_only_user)
        item = pipeline["scenario"].a_items[0]
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        t_after = time.time()  # later than every click of the scenario
        for user in users:
            producer.send(topology.CLICKS.name, key=user.encode(), value=json.dumps(
                {"event_id": f"after-{user}", "user_id": user, "item_id": item, "ts": t_after}).encode())
        producer.flush()
        producer.close()

        def new(records: list) -> dict[str, dict]:
            return {v["user_id"]: v for v in values(records) if v["event_ts"] >= t_after}

        records = read_topic(broker.bootstrap, topology.USER_INTERESTS.name, lambda rs: len(new(rs)) >= len(users),
                             timeout_s=120, worker=worker)
        after = new(records)
        assert set(after) == set(users)
        for user in users:
            expected = (before[user]["history"] + [item])[-pipeline["release"].max_len:]
            assert after[user]["history"] == expected, (user, before[user]["history"], after[user]["history"])
            assert after[user]["seq_len"] == len(expected)
        # latest-candidates came back from the candidates topic, its changelog: each click after the restart is
        # judged against the user's list from before it
        def judged() -> float:
            return sum(v for _, v in metric_samples(worker.metrics(), "mindstream_online_clicks_total"))

        assert wait_until(lambda: judged() >= len(users), 30), judged()
    finally:
        assert worker.stop() == 0


def test_interest_and_recall_roles_in_separate_workers(ml100k_release: Path, movielens, tmp_path: Path) -> None:
    """The deployment of docker-compose: one worker of role `interest` (clicks -> user-interests), one of role
    `recall` (user-interests -> candidates). The recall worker searches the interests it reads from the topic."""
    release = load_release(ml100k_release)
    users = sorted(movielens.sequences, key=int)[:10]
    with broker_with_topics(tmp_path / "broker.log", PARTITIONS) as broker:
        interest = Worker(broker.bootstrap, ml100k_release, tmp_path / "state-i", tmp_path / "interest.log",
                          PARTITIONS, TOP_N, extra=("--role", "interest"))
        recall = Worker(broker.bootstrap, ml100k_release, tmp_path / "state-r", tmp_path / "recall.log",
                        PARTITIONS, TOP_N, extra=("--role", "recall"))
        try:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
            now = time.time()
            for user in users:
                for n, item in enumerate(movielens.sequences[user][-10:]):
                    producer.send(topology.CLICKS.name, key=f"ml-{user}".encode(), value=json.dumps(
                        {"event_id": f"{user}-{n}", "user_id": f"ml-{user}", "item_id": item, "ts": now + n}).encode())
            producer.close()
            expected = {f"ml-{u}" for u in users}

            def complete(records: list) -> bool:  # every user's list computed from all 10 of its clicks
                return expected <= {v["user_id"] for v in values(records) if v["event_ts"] == now + 9}

            latest = latest_by_user(read_topic(broker.bootstrap, topology.CANDIDATES.name, complete, timeout_s=240,
                                               worker=recall))
            for user in users:
                value = latest[f"ml-{user}"]
                assert value["model_version"] == release.version and len(value["items"]) == TOP_N
                assert not set(movielens.sequences[user][-10:]) & {c["item_id"] for c in value["items"]}
            # each worker did its own part only
            assert metric_value(recall.metrics(), "mindstream_recall_seconds_count") >= len(users)
            assert metric_value(interest.metrics(), "mindstream_recall_seconds_count") == 0
            assert metric_value(interest.metrics(), "mindstream_events_total", 'status="ok"') == 10 * len(users)
        finally:
            assert interest.stop() == 0 and recall.stop() == 0
