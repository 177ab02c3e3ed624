"""The user tools: the click simulator, `mindstream produce` and `mindstream candidates`."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from infra.broker import EmbeddedBroker
from model.data import load_dataset
from stream.cli import main
from stream.commands.simulate import ClickSimulator, SimConfig, write_jsonl
from tests.streamkit import read_topic

SMALL = SimConfig(n_users=60, n_items=400, n_categories=20, clicks_per_user=40, seed=7)


# --------------------------------------------------------------------------- simulator


def test_simulator_is_deterministic_per_seed():
    a = list(ClickSimulator(SMALL).events())
    b = list(ClickSimulator(SMALL).events())
    c = list(ClickSimulator(SimConfig(**{**SMALL.__dict__, "seed": 8})).events())
    assert a == b
    assert a != c
    assert len(a) == ClickSimulator(SMALL).expected_events()


def test_simulator_events_follow_the_clicks_contract_in_time_order():
    events = list(ClickSimulator(SMALL).events())
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    sim = ClickSimulator(SMALL)
    for e in events[:200]:
        assert set(e) == {"event_id", "user_id", "item_id", "ts", "category"}
        assert isinstance(e["ts"], float)
        # the category is the item's catalog category, not the interest the user drew from
        assert e["category"] == f"c{sim.item_category(int(e['item_id'][1:]))}"


def test_users_click_mostly_within_two_to_four_latent_interests():
    sim = ClickSimulator(SMALL)
    per_user: dict[str, Counter] = {}
    for e in sim.events():
        per_user.setdefault(e["user_id"], Counter())[e["category"]] += 1
    n_interests = Counter()
    for u in range(SMALL.n_users):
        interests = {f"c{c}" for c in sim.user_interests(u)}
        n_interests[len(interests)] += 1
        clicks = per_user[f"u{u}"]
        inside = sum(n for c, n in clicks.items() if c in interests)
        assert inside / sum(clicks.values()) >= 0.75, (u, interests, clicks)
        # multi-interest, not one dominant interest: at least two interests get clicks
        assert sum(1 for c in interests if clicks[c] > 0) >= 2
    assert set(n_interests) <= {2, 3, 4} and len(n_interests) >= 2


def test_simulated_jsonl_is_a_training_dataset(tmp_path):
    path = tmp_path / "clicks.jsonl"
    n = write_jsonl(ClickSimulator(SMALL).events(), path, progress=False)
    data = load_dataset(path)
    assert data.n_interactions == n
    assert len(data.sequences) == SMALL.n_users
    assert all(len(cats) == 1 for cats in data.item_categories.values())


def test_simulate_command_writes_the_file(tmp_path, capsys):
    out = tmp_path / "sim.jsonl"
    assert main(["simulate", "--out", str(out), "--sim-users", "5", "--sim-items", "50", "--sim-categories", "5",
                 "--seed", "3"]) == 0
    lines = out.read_text().splitlines()
    assert lines and all(json.loads(x)["user_id"].startswith("u") for x in lines)
    assert f"wrote {len(lines)} clicks" in capsys.readouterr().out


# --------------------------------------------------------------------------- produce / candidates on a broker


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        yield b


def _read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 15.0) -> list:
    return read_topic(bootstrap, topic, lambda rs: len(rs) >= expected, timeout_s)


def test_produce_replays_a_click_log_keyed_by_user(broker, tmp_path, capsys):
    log = tmp_path / "clicks.jsonl"
    rows = [{"event_id": f"e{i}", "user_id": f"u{i % 3}", "item_id": f"i{i}", "ts": 1.0 + i, "category": "c1"}
            for i in range(12)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = time.time()
    assert main(["produce", "--data", str(log), "--bootstrap", broker.bootstrap, "--topic", "t-clicks",
                 "--rate", "0", "--limit", "10", "--partitions", "3", "--no-progress"]) == 0
    assert "sent 10 events of 3 users" in capsys.readouterr().out
    records = _read_topic(broker.bootstrap, "t-clicks", 10)
    # created with the workers' partition count, not the broker's auto-create default
    assert {r.partition for r in records} <= {0, 1, 2}
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    [meta] = admin.describe_topics(["t-clicks"])
    admin.close()
    assert len(meta["partitions"]) == 3
    values = [json.loads(r.value) for r in records]
    assert sorted(v["event_id"] for v in values) == sorted(f"e{i}" for i in range(10))
    for r, v in zip(records, values, strict=True):
        assert r.key.decode() == v["user_id"]
        assert v["ts"] >= before  # stamped with the send time: latency is measured from it
        assert v["item_id"] == f"i{v['event_id'][1:]}" and v["category"] == "c1"


def test_produce_interleaves_a_sequence_dataset_and_limits_users(broker, tmp_path, capsys):
    data = tmp_path / "seq.txt"
    data.write_text("a 1 2 3\nb 4 5 6 7\nc 8 9 10\n")
    assert main(["produce", "--data", str(data), "--bootstrap", broker.bootstrap, "--topic", "t-seq",
                 "--rate", "500", "--users", "2", "--no-progress"]) == 0
    assert "sent 7 events of 2 users" in capsys.readouterr().out
    values = [json.loads(r.value) for r in _read_topic(broker.bootstrap, "t-seq", 7)]
    per_user: dict[str, list[str]] = {}
    for v in sorted(values, key=lambda v: v["ts"]):
        per_user.setdefault(v["user_id"], []).append(v["item_id"])
    assert per_user == {"a": ["1", "2", "3"], "b": ["4", "5", "6", "7"]}


def test_produce_replays_the_simulator(broker, capsys):
    assert main(["produce", "--simulate", "--sim-users", "3", "--sim-items", "30", "--sim-categories", "4",
                 "--seed", "5", "--bootstrap", broker.bootstrap, "--topic", "t-sim", "--rate", "0", "--limit", "20",
                 "--no-progress"]) == 0
    assert "sent 20 events of 3 users" in capsys.readouterr().out
    got = [json.loads(r.value) for r in _read_topic(broker.bootstrap, "t-sim", 20)]
    expected = list(ClickSimulator(SimConfig(n_users=3, n_items=30, n_categories=4, seed=5)).events())[:20]
    assert sorted(v["event_id"] for v in got) == sorted(e["event_id"] for e in expected)


def test_candidates_prints_one_users_lists(broker, capsys):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("t-cands", num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for n, user in enumerate(["u1", "u2", "u1", "u3"]):
        value = {"user_id": user, "model_version": f"v{n}", "event_ts": 100.0, "published_ts": 100.0125,
                 "items": [{"item_id": f"i{n}{j}", "score": 1.0 - j / 10, "interest": j % 2} for j in range(12)]}
        producer.send("t-cands", key=user.encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()

    assert main(["candidates", "--bootstrap", broker.bootstrap, "--topic", "t-cands", "--user", "u1",
                 "--top", "3"]) == 0
    out = capsys.readouterr()
    blocks = [line for line in out.out.splitlines() if line.startswith("user ")]
    assert len(blocks) == 2 and all(b.startswith("user u1 ") for b in blocks)
    assert {b.split()[3] for b in blocks} == {"v0", "v2"}
    assert "event->candidates 12.5 ms" in out.out
    assert "i00 (1.000, k0)  i01 (0.900, k1)  i02 (0.800, k0)  ... 9 more" in out.out
    assert "2 candidate list(s) for user u1" in out.err

    assert main(["candidates", "--bootstrap", broker.bootstrap, "--topic", "t-cands", "--json"]) == 0
    users = sorted(json.loads(line)["user_id"] for line in capsys.readouterr().out.splitlines())
    assert users == ["u1", "u1", "u2", "u3"]


def test_candidates_on_a_missing_topic_prints_nothing(broker, capsys):
    assert main(["candidates", "--bootstrap", broker.bootstrap, "--topic", "t-none"]) == 0
    assert "0 candidate list(s)" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ('{"user_id": "u1", "item_id": "i1"}\n{"user_id": "u1", "item_id": \n', ".jsonl", ":2: invalid JSON"),
    ('{"user_id": "u1", "item_id": "i1", "ts": "soon"}\n', ".jsonl", ":1: `ts` is not a number"),
    ('{"user_id": "u1"}\n', ".jsonl", ":1: missing `item_id`"),
    ("user_id,item_id,ts\nu1,i1,1\nu2,i2\n", ".csv", ":3: expected 3 fields"),
    ("user,item\nu1,i1\n", ".csv", ":1: header lacks user_id, item_id"),
])
def test_produce_reports_bad_files_with_file_and_line(tmp_path, capsys, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    # the file is read before anything is sent, so no broker is needed to fail
    assert main(["produce", "--data", str(path), "--bootstrap", "127.0.0.1:1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mindstream produce: {path}") and message in err and err.count("\n") == 1


def test_produce_reports_a_missing_file(tmp_path, capsys):
    assert main(["produce", "--data", str(tmp_path / "nope.jsonl"), "--no-progress"]) == 2
    assert "nope.jsonl: no such file or directory" in capsys.readouterr().err
