"""The worker's Prometheus metrics (names and labels are the contract in ARCHITECTURE.md; the Grafana
dashboard and infra/prometheus/rules.yml query them). Every metric of the project is declared here.

Exposition: the worker serves `render()` at /metrics on its Faust web server (127.0.0.1 by default).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from stream.topology import ITEMS

# 0.5 ms .. 10 s, roughly x2 per step: the tower and recall live in the first buckets, click -> candidates
# under load in the last.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)

# 0.1 ms .. 10 s, finer than LATENCY_BUCKETS where a click's stages live, so p50 and p99 read from the buckets (as
# Prometheus' histogram_quantile and bench/stream.py do) land within a bucket of a few tenths of a millisecond
STAGE_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02,
    0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0,
)
# the worker's part of a click's latency, in the order a batch runs them
STAGES: tuple[str, ...] = ("parse_table", "tower", "search", "produce")

EVENTS = Counter(
    "mindstream_events", "Clicks consumed, by outcome: ok, invalid, duplicate, unknown_item.", ["status"]
)
DEAD_LETTERS = Counter(
    "mindstream_dead_letters", "Records written to clicks-dlq, by reason.", ["reason"]
)
RECOMPUTE_SECONDS = Histogram(
    "mindstream_recompute_seconds",
    "Click consumed -> the user's candidates published (role all), or its interests (role interest): the "
    "worker's part of a click's latency.", buckets=STAGE_BUCKETS,
)
FETCH_WAIT_SECONDS = Histogram(
    "mindstream_fetch_wait_seconds",
    "Click ts (producer clock) -> consumed by the worker: the producer's send, the broker, and the fetch wait.",
    buckets=STAGE_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "mindstream_stage_seconds",
    "The worker's time per batch, by stage: parse_table (validate, de-duplicate, behaviors table), tower (ONNX "
    "user tower), search (hnswlib per interest + merge), produce (interests, candidates and table updates sent).",
    ["stage"], buckets=STAGE_BUCKETS,
)
USER_TOWER_SECONDS = Histogram(
    "mindstream_user_tower_seconds", "One ONNX user-tower run (one batch of users).", buckets=LATENCY_BUCKETS
)
RECALL_SECONDS = Histogram(
    "mindstream_recall_seconds", "ANN search over every interest + merge, for one user.", buckets=LATENCY_BUCKETS
)
EVENT_TO_CANDIDATES_SECONDS = Histogram(
    "mindstream_event_to_candidates_seconds",
    "Click ts (producer clock) -> candidates published.",
    buckets=LATENCY_BUCKETS,
)
INTEREST_SIMILARITY = Histogram(
    "mindstream_interest_similarity",
    "Mean pairwise cosine of a user's interests, per recompute of a user with two or more: values near 1 mean the "
    "interests collapsed into copies of one vector (routing collapse).",
    buckets=(-0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
REFRESHES = Counter(
    "mindstream_refreshes",
    "Refresh requests (mindstream refresh), by outcome: ok, no_behaviors, unknown_items, error.",
    ["status"],
)
NEW_ITEMS = Counter(
    "mindstream_new_items",
    "Items the served model was not trained on, indexed live with their category vector, by source: items "
    "(the catalog topic), click (a click naming its category).",
    ["source"],
)
NEW_ITEMS_LIVE = Gauge("mindstream_new_items_live", "New items in the served version's index (bounded).")
ITEM_RECORDS = Counter("mindstream_item_records", "Records read from the items topic, by outcome: ok, invalid.",
                       ["status"])
MODEL_INFO = Gauge("mindstream_model_info", "1 for the model version being served.", ["version"])
MODEL_SWAPS = Counter("mindstream_model_swaps", "Model release swaps, by result: ok, rejected.", ["result"])
# `version` beside the contract's `k`: the online hit rate compares model versions (stream/monitoring/online.py).
ONLINE_HITS = Counter(
    "mindstream_online_hits", "Clicks on an item in the user's latest top-k candidates.", ["k", "version"]
)
ONLINE_CLICKS = Counter(
    "mindstream_online_clicks", "Clicks judged against the user's latest candidate list.", ["version"]
)

for _stage in STAGES:
    STAGE_SECONDS.labels(stage=_stage)
for _status in ("ok", "invalid", "duplicate", "unknown_item"):
    EVENTS.labels(status=_status)  # series exist at 0 from the start: rate() has data, alerts see a baseline
for _status in ("ok", "no_behaviors", "unknown_items", "error"):
    REFRESHES.labels(status=_status)
for _source in (ITEMS.name, "click"):  # stream/worker/catalog.py ITEMS_SOURCE, CLICK_SOURCE
    NEW_ITEMS.labels(source=_source)
for _status in ("ok", "invalid"):
    ITEM_RECORDS.labels(status=_status)
for _result in ("ok", "rejected"):
    MODEL_SWAPS.labels(result=_result)


def serve_version(version: str) -> None:
    """mindstream_model_info: 1 for `version`, every other version removed."""
    for labels in list(MODEL_INFO._metrics):
        if labels != (version,):
            MODEL_INFO.remove(*labels)
    MODEL_INFO.labels(version=version).set(1)


def render() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition of this process."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
