"""Monitoring: the online hit rate (pure parts) and, end to end, a real Prometheus server scraping a
real worker on the embedded broker while the dashboard's queries are run against it."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from infra.broker import EmbeddedBroker
from infra.processes import WorkerProcess
from infra.prometheus_server import PrometheusServer
from stream import topology
from stream.messages import Candidates
from stream.monitoring.online import TOP_K, OnlineHitRate, hits_at, judge
from stream.monitoring.web import PNG_SIGNATURE

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "infra" / "grafana" / "dashboards" / "mindstream.json"


def candidates(items: list[str], version: str = "v1", published_ts: float = 100.0) -> Candidates:
    return Candidates("u", version, [{"item_id": i, "score": 1.0 - n / 1000, "interest": 0}
                                     for n, i in enumerate(items)], published_ts - 1, published_ts)


def test_hits_at_counts_by_rank() -> None:
    ids = [f"i{n}" for n in range(200)]
    assert hits_at(ids, "i0") == {10: True, 50: True, 100: True}
    assert hits_at(ids, "i9") == {10: True, 50: True, 100: True}
    assert hits_at(ids, "i10") == {10: False, 50: True, 100: True}
    assert hits_at(ids, "i49") == {10: False, 50: True, 100: True}
    assert hits_at(ids, "i99") == {10: False, 50: False, 100: True}
    assert hits_at(ids, "i100") == {10: False, 50: False, 100: False}
    assert hits_at(ids, "not-there") == {k: False for k in TOP_K}
    assert hits_at([], "i0") == {k: False for k in TOP_K}


def test_judge_uses_only_lists_from_earlier_clicks() -> None:
    latest = candidates(["a", "b"], published_ts=100.0)  # computed from the click at ts 99
    assert judge(latest, "a", click_ts=101.0).hits[10] is True
    assert judge(latest, "b", click_ts=99.5).version == "v1"  # published after, but from an earlier click
    assert judge(latest, "a", click_ts=99.0) is None  # the list was computed from this very click
    assert judge(latest, "a", click_ts=98.0) is None
    assert judge(None, "a", click_ts=101.0) is None
    without_event_ts = dataclasses.replace(latest, event_ts=None)
    assert judge(without_event_ts, "a", click_ts=100.0) is not None
    assert judge(without_event_ts, "a", click_ts=99.9) is None


def test_online_hit_rate_counts_per_version_and_k() -> None:
    registry = CollectorRegistry()
    clicks = Counter("mindstream_online_clicks", "c", ["version"], registry=registry)
    hits = Counter("mindstream_online_hits", "h", ["k", "version"], registry=registry)
    rate = OnlineHitRate(clicks, hits)
    ranked = [f"i{n}" for n in range(100)]

    rate.observe(candidates(ranked, "v1"), "i3", click_ts=200.0)  # hit at 10, 50, 100
    rate.observe(candidates(ranked, "v1"), "i60", click_ts=200.0)  # hit at 100 only
    rate.observe(candidates(ranked, "v2"), "zzz", click_ts=200.0)  # miss
    assert rate.observe(None, "i3", click_ts=200.0) is None  # no list: not counted

    def value(name: str, **labels: str) -> float:
        v = registry.get_sample_value(name, labels)
        assert v is not None, f"{name}{labels} missing"
        return v

    assert value("mindstream_online_clicks_total", version="v1") == 2
    assert value("mindstream_online_clicks_total", version="v2") == 1
    assert value("mindstream_online_hits_total", k="10", version="v1") == 1
    assert value("mindstream_online_hits_total", k="50", version="v1") == 1
    assert value("mindstream_online_hits_total", k="100", version="v1") == 2
    # A version with clicks and no hit still has its series, at 0: HR@k is 0, not "no data".
    assert value("mindstream_online_hits_total", k="10", version="v2") == 0



# --- end to end: embedded broker, a real worker, a real Prometheus ---------------------------------------



def wait_for(what: str, probe: Callable[[], Any], timeout_s: float, alive: Callable[[], None] = lambda: None) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive()
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)


def http_get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


@pytest.fixture(scope="module")
def stack(ml100k_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Broker, one worker (role all) serving the ml-100k release, Prometheus scraping the worker every second."""
    work = tmp_path_factory.mktemp("monitoring")
    with EmbeddedBroker(log_path=str(work / "broker.log")) as broker:
        worker = WorkerProcess("worker", work / "worker.log", broker.bootstrap, work / "state",
                               models_dir=ml100k_release.parent, args=("--partitions", "4"))
        web_port = worker.web_port
        try:
            base = f"http://127.0.0.1:{web_port}"

            def metrics_up() -> bool:
                try:
                    return http_get(f"{base}/metrics")[0] == 200
                except OSError:
                    return False

            wait_for("the worker's web server", metrics_up, 120, worker.check_alive)
            with PrometheusServer([f"127.0.0.1:{web_port}"], interval_s=1.0) as prom:
                yield {"bootstrap": broker.bootstrap, "base": base, "prom": prom, "worker": worker,
                       "version": ml100k_release.name}
        finally:
            worker.stop()


def send(bootstrap: str, events: list[dict[str, Any] | tuple[str, bytes]]) -> None:
    """Clicks (dicts, keyed by user id) or raw (key, bytes) records onto the clicks topic."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=1)
    try:
        for e in events:
            if isinstance(e, tuple):
                producer.send(topology.CLICKS.name, key=e[0].encode(), value=e[1])
            else:
                producer.send(topology.CLICKS.name, key=e["user_id"].encode(), value=json.dumps(e).encode())
        producer.flush()
    finally:
        producer.close()


def click(user: str, item: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item, "ts": time.time()}


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(http_get(f"{base}/metrics")[2].decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def online_hits(base: str, k: int) -> float:
    return sum(v for (name, labels), v in scrape(base).items()
               if name == "mindstream_online_hits_total" and dict(labels).get("k") == str(k))


@pytest.fixture(scope="module")
def user_with_candidates(stack: dict[str, Any], shared_data: Path) -> str:
    """A real ml-100k user whose first clicks went through the worker and came back as candidates."""
    from model.data import load_dataset

    data = load_dataset(shared_data / "ml-100k")
    users = [u for u, seq in sorted(data.sequences.items()) if len(seq) >= 12][:3]
    clicks = [click(u, item) for u in users for item in data.sequences[u][:8]]
    send(stack["bootstrap"], clicks)
    base = stack["base"]
    last_ts = max(c["ts"] for c in clicks if c["user_id"] == users[0])

    def settled() -> bool:
        # the list computed from the user's last click: no other list of this user is still in flight
        status, _, body = http_get(f"{base}/users/{users[0]}")
        latest = (json.loads(body).get("candidates") or {}) if status == 200 else {}
        return bool(latest.get("items")) and latest.get("event_ts") == last_ts

    wait_for(f"candidates for user {users[0]}", settled, 180, stack["worker"].check_alive)
    return users[0]


def test_user_endpoint(stack: dict[str, Any], user_with_candidates: str) -> None:
    status, content_type, body = http_get(f"{stack['base']}/users/{user_with_candidates}")
    assert status == 200 and content_type.startswith("application/json")
    doc = json.loads(body)
    assert doc["user_id"] == user_with_candidates
    assert len(doc["behaviors"]) >= 8 and all({"ts", "item_id"} <= set(b) for b in doc["behaviors"])
    assert doc["model_version"] == stack["version"]
    items = doc["candidates"]["items"]
    assert items and {"item_id", "score", "interest"} <= set(items[0])
    history = {b["item_id"] for b in doc["behaviors"]}
    assert not history & {c["item_id"] for c in items}, "candidates repeat the user's history"

    status, _, body = http_get(f"{stack['base']}/users/no-such-user-{uuid.uuid4().hex}")
    assert status == 404
    assert "unknown user" in json.loads(body)["error"]


def test_explain_png(stack: dict[str, Any], user_with_candidates: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    status, content_type, body = http_get(f"{stack['base']}/users/{user_with_candidates}/explain.png")
    assert status == 200 and content_type == "image/png"
    assert body.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(io.BytesIO(body), format="png")
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image[..., :3].std() > 0.01, "the heatmap is a blank image"
    assert http_get(f"{stack['base']}/users/no-such-user/explain.png")[0] == 404


def test_online_hit_counters_move_on_a_click_from_the_list(stack: dict[str, Any], user_with_candidates: str) -> None:
    base, user = stack["base"], user_with_candidates
    _, _, body = http_get(f"{base}/users/{user}")
    top = json.loads(body)["candidates"]["items"][0]["item_id"]
    before = {k: online_hits(base, k) for k in TOP_K}
    send(stack["bootstrap"], [click(user, top)])
    wait_for("mindstream_online_hits_total{k=10} to move", lambda: online_hits(base, 10) > before[10], 60,
             stack["worker"].check_alive)
    after = {k: online_hits(base, k) for k in TOP_K}
    assert all(after[k] == before[k] + 1 for k in TOP_K), (before, after)  # rank 1 is in the top 10, 50 and 100
    clicks = scrape(base)[("mindstream_online_clicks_total", (("version", stack["version"]),))]
    assert clicks >= 1

    # ... and Prometheus sees the same through the dashboard's HR@k query
    prom = stack["prom"]
    wait_for("online hits in Prometheus",
             lambda: prom.query('sum(mindstream_online_hits_total{k="10"})') and
             float(prom.query('sum(mindstream_online_hits_total{k="10"})')[0]["value"][1]) >= after[10], 30)


def test_every_dashboard_query_returns_data(stack: dict[str, Any], user_with_candidates: str) -> None:
    # A malformed record: the dead-letter panel has a series only once something was dead-lettered. A click
    # of a user who has candidates: the HR@k panel has a series once a click was judged against a list.
    _, _, body = http_get(f"{stack['base']}/users/{user_with_candidates}")
    listed = json.loads(body)["candidates"]["items"][-1]["item_id"]
    send(stack["bootstrap"], [(user_with_candidates, b"{not json"), click(user_with_candidates, listed)])
    prom = stack["prom"]
    dash = json.loads(DASHBOARD.read_text())
    exprs = [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]
    assert len(exprs) >= 12
    for title, expr in exprs:
        result = wait_for(f"data for panel {title!r}: {expr}", lambda e=expr: prom.query(e), 90,
                          stack["worker"].check_alive)
        assert all(len(r["value"]) == 2 for r in result)
    # and the values mean something: latency quantiles are finite and positive, lag is sampled per partition
    p99 = prom.query("mindstream:event_to_candidates_seconds:p99_5m")
    assert 0 < float(p99[0]["value"][1]) < math.inf
    lag = prom.query("mindstream_consumer_lag")
    assert {r["metric"]["topic"] for r in lag} >= {topology.CLICKS.name}
    dlq = prom.query('sum by (reason) (mindstream_dead_letters_total)')
    assert any(r["metric"].get("reason") == "not_json" and float(r["value"][1]) >= 1 for r in dlq)
