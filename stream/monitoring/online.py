"""Online hit rate: was the clicked item in the user's latest candidate list?

The offline protocol ranks a held-out next item against all items (HR@10/50/100); this is the
same question asked of live traffic: for each click, take the candidate list last published for
that user *before* the click, and count a hit at k when the clicked item is among its first k
items. Grouped by the model version that produced the list, the ratio
`mindstream_online_hits_total{k,version} / mindstream_online_clicks_total{version}` compares
model versions on real users (dashboard panel "Online hit rate HR@k per model version").

Labels stay few: k has three values and a version lives one day, so a worker exports at most a
handful of series per counter. A click with no earlier candidate list (a new user, or only a list
computed from this very click) is not counted: there was nothing to hit.

Where the latest-candidates table lives (stream/worker/recall.py) clicks are judged against it: the clicks topic
and the table's topic are co-partitioned by user id, so a user's clicks and latest list are on the same worker.
A worker running both agents (`--role all`) judges each valid click in the interest agent, before applying it
(`click_judge`): a second agent on the clicks topic cost a second delivery and parse of every click. A recall
worker has no interest agent; `install` gives it an agent of its own on the clicks topic, which only reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stream.messages import Candidates

TOP_K: tuple[int, ...] = (10, 50, 100)


def hits_at(candidate_ids: Sequence[str], clicked_item: str, ks: Iterable[int] = TOP_K) -> dict[int, bool]:
    """For each k: is `clicked_item` among the first k of `candidate_ids` (best first)?"""
    try:
        rank = list(candidate_ids).index(clicked_item)
    except ValueError:
        return {k: False for k in ks}
    return {k: rank < k for k in ks}


@dataclass(frozen=True)
class OnlineOutcome:
    """One click judged against one candidate list."""

    version: str
    hits: dict[int, bool]


def judge(latest: Candidates | None, clicked_item: str, click_ts: float,
          ks: Iterable[int] = TOP_K) -> OnlineOutcome | None:
    """Judge a click against `latest`, the user's latest candidate list.

    "Published before the click" is read in event time: the list must come from a click earlier than
    this one (`event_ts` < the click's `ts`), so a list computed *from* this click (it can be in the table
    already when this click is judged late) never counts as predicting it. Lists without `event_ts` fall
    back to `published_ts` <= the click's `ts`. Returns None when no list qualifies: nothing was predicted.
    """
    if latest is None:
        return None
    if latest.event_ts is not None:
        if not latest.event_ts < click_ts:
            return None
    elif latest.published_ts > click_ts:
        return None
    ids = [c["item_id"] for c in latest.items]
    return OnlineOutcome(version=latest.model_version, hits=hits_at(ids, clicked_item, ks))


class OnlineHitRate:
    """Counts judged clicks into Prometheus counters.

    `clicks` must have the label `version`; `hits` the labels `k` and `version`. They are passed
    in (not created here) so that stream/monitoring/metrics.py stays the one place that declares metrics,
    and tests can use a private registry.
    """

    def __init__(self, clicks: Any, hits: Any, ks: Iterable[int] = TOP_K) -> None:
        self.clicks = clicks
        self.hits = hits
        self.ks = tuple(ks)

    def observe(self, latest: Candidates | None, clicked_item: str, click_ts: float) -> OnlineOutcome | None:
        outcome = judge(latest, clicked_item, click_ts, self.ks)
        if outcome is None:
            return None
        self.clicks.labels(version=outcome.version).inc()
        for k, hit in outcome.hits.items():
            # .labels() alone creates the series at 0: HR@k reads 0 rather than "no data" before the first hit.
            series = self.hits.labels(k=str(k), version=outcome.version)
            if hit:
                series.inc()
        return outcome


def from_metrics() -> OnlineHitRate:
    """The worker's counter, on the counters declared in stream/monitoring/metrics.py."""
    from stream.monitoring import metrics

    return OnlineHitRate(metrics.ONLINE_CLICKS, metrics.ONLINE_HITS)


def click_judge(latest_table: Any, rate: OnlineHitRate | None = None) -> Callable[[Any], None]:
    """`judge(click)`: counts a valid click (stream.events.Click) against `latest_table[user_id]`, the user's
    latest `candidates` value. Called under the click's event, which picks the table partition."""
    from stream.worker.recall import latest_candidates

    rate = rate or from_metrics()

    def judge_click(click: Any) -> None:
        rate.observe(latest_candidates(latest_table, click.user_id), click.item_id, click.ts)

    return judge_click


def install(app: Any, settings: Any, latest_table: Any, rate: OnlineHitRate | None = None) -> Any:
    """Declare the online hit-rate agent on `app` (a worker without the interest agent): every valid click is
    judged against `latest_table[user_id]`. Returns the agent."""
    from stream.events import InvalidEvent, parse_click
    from stream.topology import CLICKS

    judge_click = click_judge(latest_table, rate)
    clicks_topic = app.topic(settings.topic(CLICKS.name), key_serializer="raw", value_serializer="raw",
                             partitions=settings.partitions)

    @app.agent(clicks_topic, name="online-hit-rate")
    async def online_hit_rate(stream: Any) -> None:
        async for event in stream.events():
            click = parse_click(event.value, event.key, settings.max_event_bytes)
            if isinstance(click, InvalidEvent):
                continue  # the interest agent dead-letters it
            judge_click(click)

    return online_hit_rate
