"""The interest agent: clicks -> behavior sequence (RocksDB table) -> ONNX user tower -> user-interests.

    clicks (raw bytes) ──► validate ──► de-duplicate, append to `behaviors` ──► tower (batched) ──► user-interests
                              └── bad record ──► clicks-dlq      └── new item with a category ──► items

A click on an item the served release was not trained on is a valid click: it is applied and counted
(unknown_item). When the click or the `items` catalog gives its category, the item has that category's vector
(model/new_items.py), in the user's sequence and in the index, so the click moves the user's interests.

Clicks are taken in batches of what is ready (stream/worker/batching.py, at most `batch_max`): the users of one
batch share one ONNX run. Offsets are acknowledged only after the batch's interests are sent (at-least-once; a
redelivered click is recognised by its event id and changes nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faust
import numpy as np

from model.ann import kept_interests
from model.release import Release
from stream.config import Settings
from stream.events import UNKNOWN_ITEM, Click, InvalidEvent, parse_click
from stream.messages import CatalogItem, DeadLetter, UserInterests
from stream.monitoring import metrics
from stream.topology import BEHAVIORS, CLICKS, CLICKS_DLQ, REFRESH_REQUESTS, USER_INTERESTS
from stream.worker.app import current_event, table_options
from stream.worker.batching import take_ready
from stream.worker.behaviors import Behaviors
from stream.worker.catalog import CLICK_SOURCE, announce, register
from stream.worker.recall import CandidatesPublisher, RecallRequest
from stream.worker.releases import ReleaseRegistry

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """A user whose sequence changed in this batch."""

    behaviors: Behaviors
    event_ts: float
    event: faust.types.EventT  # the user's last click of the batch (its partition is the user's)
    consumed: list[float] = field(default_factory=list)  # monotonic consume time of each click applied
    events: list[faust.types.EventT] = field(default_factory=list)  # the clicks applied, dead-lettered if it fails


def interests_message(user_id: str, release: Release, interests: np.ndarray, behaviors: Behaviors,
                      event_ts: float, refresh: bool = False) -> UserInterests:
    """The user-interests value of the user's K'u `interests` [K'u, d]. `history` (the sequence's item ids,
    oldest first) goes with it so the recall agent, which may run on another worker, can drop already-seen
    items; `refresh` so that recall leaves a refresh out of the click -> candidates latency."""
    return UserInterests(user_id, release.version, interests, len(behaviors.seq), event_ts, time.time(),
                         behaviors.items, refresh)


def interest_cosines(interests: list[np.ndarray], n_interests: list[int]) -> np.ndarray:
    """The mean pairwise cosine of each user's valid interests (interests [K, d] and K'u per user), for the users
    with two or more: model/mind.py's `interest_similarity`, which the offline report uses, in numpy. A batch holds a
    few users, and torch's cost per call was 7 % of a busy worker's main thread (py-spy, the 1M catalog at 140/s)."""
    V = np.stack(interests).astype(np.float64)
    unit = V / np.maximum(np.linalg.norm(V, axis=-1, keepdims=True), 1e-12)  # F.normalize's eps
    cos = unit @ unit.transpose(0, 2, 1)  # [B, K, K]
    valid = np.arange(V.shape[1])[None, :] < np.asarray(n_interests)[:, None]
    pairs = valid[:, None, :] & valid[:, :, None] & ~np.eye(V.shape[1], dtype=bool)
    n_pairs = pairs.sum((1, 2))
    has = n_pairs > 0
    return (cos * pairs).sum((1, 2))[has] / n_pairs[has]


def observe_interest_similarity(interests: list[np.ndarray], n_interests: list[int]) -> None:
    """Each user's mean pairwise interest cosine into `mindstream_interest_similarity` (users with two or more),
    one call per batch."""
    for value in interest_cosines(interests, n_interests).tolist():
        metrics.INTEREST_SIMILARITY.observe(value)


def run_tower(release: Release, users: list[Behaviors]) -> tuple[np.ndarray, np.ndarray]:
    """One ONNX run for the users of a batch: interests [B, K, d], n_interests [B]. Behaviors are the items'
    vectors in this release: trained ones, and new items' category vectors."""
    encoded = [release.encode_behaviors(b.items) for b in users]
    behaviors = np.stack([e for e, _ in encoded])
    mask = np.stack([m for _, m in encoded])
    profile = np.stack([release.encode_profile(b.profile) for b in users])
    with metrics.USER_TOWER_SECONDS.time(), metrics.STAGE_SECONDS.labels(stage="tower").time():
        return release.tower(behaviors, mask, profile)


@dataclass
class _Recompute:
    """A user whose interests a batch recomputes (after clicks, or on a refresh request)."""

    user_id: str
    behaviors: Behaviors
    event_ts: float  # the newest behavior the interests come from
    event: faust.types.EventT  # the record that caused it: its partition is the user's


def run_tower_isolated(release: Release, users: list[_Recompute]
                       ) -> tuple[list[tuple[_Recompute, np.ndarray, int]], list[tuple[_Recompute, Exception]]]:
    """One tower run for the batch; if it raises, one run per user, so that an input the tower cannot take
    (e.g. a profile index beyond its embedding table) costs that user's update, not the batch. Returns
    ([(user, interests [K, d], n_interests)], [(user, error)])."""
    try:
        interests, n_interests = run_tower(release, [u.behaviors for u in users])
        return list(zip(users, interests, n_interests, strict=True)), []
    except Exception as e:
        if len(users) == 1:
            return [], [(users[0], e)]
    done, failed = [], []
    for u in users:
        try:
            interests, n_interests = run_tower(release, [u.behaviors])
            done.append((u, interests[0], n_interests[0]))
        except Exception as e:
            failed.append((u, e))
    return done, failed


async def emit(release: Release, users: list[_Recompute], interests_topic: faust.types.TopicT,
               candidates: CandidatesPublisher | None, refresh: bool = False,
               on_published: Callable[[str], None] | None = None) -> list[tuple[_Recompute, Exception]]:
    """The tower for `users`; each user's interests to `user-interests` and, with `candidates` (`--role all`),
    to recall in memory; then `on_published(user_id)` for each user served. Returns the users whose tower run
    failed, with the error (logged here; the caller dead-letters or counts them)."""
    done, failed = run_tower_isolated(release, users)
    for u, e in failed:
        log.error("user tower of %s failed for user %s: %r", release.version, u.user_id, e)
    if not done:
        return failed
    observe_interest_similarity([vectors for _, vectors, _ in done], [n for _, _, n in done])
    requests = []
    produce_s = 0.0
    for u, user_interests, n_interests in done:
        vectors = kept_interests(user_interests, n_interests)
        value = interests_message(u.user_id, release, vectors, u.behaviors, u.event_ts, refresh)
        started = time.perf_counter()
        await interests_topic.send(key=u.user_id.encode("utf-8"), value=value.to_json())
        produce_s += time.perf_counter() - started
        requests.append(RecallRequest(u.user_id, release, vectors, u.behaviors.items, u.event_ts, u.event, refresh))
    if candidates is not None:
        produce_s += await candidates.publish(requests)
    metrics.STAGE_SECONDS.labels(stage="produce").observe(produce_s)
    if on_published is not None:
        for u, _, _ in done:
            on_published(u.user_id)
    return failed


def install(app: faust.App, settings: Settings, registry: ReleaseRegistry,
            candidates: CandidatesPublisher | None = None, items_topic: faust.types.TopicT | None = None,
            judge: Callable[[Click], None] | None = None) -> faust.Table:
    """Declare the interest agent on `app`; returns its `behaviors` table (user id -> Behaviors state).
    With `candidates` (`--role all`), each batch's interests also go to recall in memory. With `items_topic`,
    an item first seen in a click that names its category is announced there. `judge` sees each valid click
    before it is applied (the online hit rate, stream/monitoring/online.py)."""
    clicks_topic = app.topic(settings.topic(CLICKS.name), key_serializer="raw", value_serializer="raw",
                             partitions=settings.partitions)
    dlq_topic = app.topic(settings.topic(CLICKS_DLQ.name), key_serializer="raw", value_serializer="raw",
                          partitions=settings.partitions)
    interests_topic = app.topic(settings.topic(USER_INTERESTS.name), key_serializer="raw", value_serializer="raw",
                                partitions=settings.partitions)
    # user id -> Behaviors state (stream/worker/behaviors.py); RocksDB locally, the changelog topic for recovery
    behaviors_table = app.Table(BEHAVIORS.name, key_type=str, partitions=settings.partitions,
                                help="user behavior sequences", options=table_options())

    async def reject(key: bytes | None, raw: bytes | None, reason: str, error: str) -> None:
        await dlq_topic.send(key=key, value=DeadLetter(reason, error, raw or b"", time.time()).to_json())
        metrics.DEAD_LETTERS.labels(reason=reason).inc()

    async def apply(event: faust.types.EventT, release: Release, pending: dict[str, _Pending]) -> None:
        parsed = parse_click(event.value, event.key, settings.max_event_bytes)
        if isinstance(parsed, InvalidEvent):
            metrics.EVENTS.labels(status="invalid").inc()
            await reject(event.key, event.value, parsed.reason, parsed.error)
            return
        click: Click = parsed
        consumed = getattr(event.message, "time_in", None) or time.monotonic()  # when the stream got the record
        metrics.FETCH_WAIT_SECONDS.observe(max(0.0, time.time() - (time.monotonic() - consumed) - click.ts))
        state = pending[click.user_id].behaviors if click.user_id in pending else \
            Behaviors.from_state(behaviors_table.get(click.user_id))
        max_len = max(settings.max_len, release.max_len)
        if not state.add(click, max_len, settings.dedup_size):
            metrics.EVENTS.labels(status="duplicate").inc()
            return
        if judge is not None:  # the list this click is judged against is not replaced before the batch publishes
            judge(click)
        entry = pending.setdefault(click.user_id, _Pending(state, click.ts, event))
        entry.event_ts, entry.event = click.ts, event
        entry.events.append(event)
        entry.consumed.append(consumed)
        if click.item_id in release.item_index:
            metrics.EVENTS.labels(status="ok").inc()
        else:  # valid, kept in the sequence; a new item when its category is known
            metrics.EVENTS.labels(status=UNKNOWN_ITEM).inc()
            if click.category is not None and registry.catalog.get(click.item_id) != click.category:
                register(registry, CatalogItem(click.item_id, click.category), CLICK_SOURCE)
                if items_topic is not None:
                    await announce(items_topic, click.item_id, click.category)

    def store(pending: dict[str, _Pending]) -> None:
        # once per user and batch, however many of its clicks the batch holds: one changelog record, not one
        # per click; before any interests are sent, so a sent list never comes from an unsaved sequence
        for user_id, entry in pending.items():
            with current_event(entry.event):  # the table partition is the user's
                behaviors_table[user_id] = entry.behaviors.to_state()

    async def publish(release: Release, pending: dict[str, _Pending]) -> None:
        # a user none of whose items has a vector in the release gets no interest update
        users = [_Recompute(u, p.behaviors, p.event_ts, p.event) for u, p in pending.items()
                 if any(release.knows(i) for i in p.behaviors.items)]
        if not users:
            return

        def published(user_id: str) -> None:
            now = time.monotonic()
            for consumed in pending[user_id].consumed:
                metrics.RECOMPUTE_SECONDS.observe(max(0.0, now - consumed))

        for u, e in await emit(release, users, interests_topic, candidates, on_published=published):
            # applied to the sequence, but no interests came of it: each of its clicks is a dead letter
            for event in pending[u.user_id].events:
                await reject(event.key, event.value, "processing_error", f"user tower: {e!r}")

    @app.agent(clicks_topic, name="interests")
    async def interest_agent(stream: faust.StreamT) -> None:
        async for events in take_ready(stream, settings.batch_max):
            release = registry.current  # one version per batch: the tower and the stamped version agree
            pending: dict[str, _Pending] = {}
            started = time.perf_counter()
            for event in events:
                with current_event(event):
                    try:
                        await apply(event, release, pending)
                    except Exception as e:  # a bug must cost one event, not the worker and the rest of the batch
                        log.exception("click at %s[%s]@%s failed", event.message.topic, event.message.partition,
                                      event.message.offset)
                        metrics.EVENTS.labels(status="invalid").inc()
                        await reject(event.key, event.value, "processing_error", repr(e))
            store(pending)
            metrics.STAGE_SECONDS.labels(stage="parse_table").observe(time.perf_counter() - started)
            await publish(release, pending)

    install_refresh(app, settings, registry, behaviors_table, interests_topic, candidates)
    return behaviors_table


def install_refresh(app: faust.App, settings: Settings, registry: ReleaseRegistry, behaviors_table: faust.Table,
                    interests_topic: faust.types.TopicT, candidates: CandidatesPublisher | None = None) -> None:
    """The refresh agent (`mindstream refresh`, docs/hotswap.md): a request keyed by user id recomputes that
    user's interests from the stored sequence with the current release, without a click. The requests topic
    has the partitions of `clicks` and the same key, so Faust's assignor gives a worker the same partitions of
    both (co-partitioned with the `behaviors` changelog) and the table read here is local. Read only: the
    click agent stays the one writer of `behaviors`."""
    # internal: the worker creates the topic at start, with the partitions of every other topic it declares
    # (a consumer's metadata request would otherwise let the broker auto-create it with its default count)
    requests_topic = app.topic(settings.topic(REFRESH_REQUESTS.name), key_serializer="raw", value_serializer="raw",
                               partitions=settings.partitions, internal=True)

    @app.agent(requests_topic, name="refresh")
    async def refresh_agent(stream: faust.StreamT) -> None:
        async for events in take_ready(stream, settings.batch_max):
            try:
                await refresh(events)
            except Exception:  # a bug must cost these requests (a refresh can be run again), not the worker
                log.exception("refresh of %d requests failed", len(events))
                metrics.REFRESHES.labels(status="error").inc(len(events))

    async def refresh(events: list[faust.types.EventT]) -> None:
        release = registry.current  # one version per batch, as in the click agent
        users: dict[str, _Recompute] = {}
        for event in events:
            user_id = (event.key or b"").decode("utf-8", "replace")
            with current_event(event):  # the table partition is the request's partition
                state = behaviors_table.get(user_id) if user_id else None
            if state is None:
                metrics.REFRESHES.labels(status="no_behaviors").inc()
                continue
            behaviors = Behaviors.from_state(state)
            # event_ts: the newest behavior the interests are computed from, as for a click
            users[user_id] = _Recompute(user_id, behaviors, behaviors.seq[-1][0], event)
        batch = [u for u in users.values() if any(release.knows(i) for i in u.behaviors.items)]
        metrics.REFRESHES.labels(status="unknown_items").inc(len(users) - len(batch))
        if not batch:
            return
        failed = await emit(release, batch, interests_topic, candidates, refresh=True)
        metrics.REFRESHES.labels(status="ok").inc(len(batch) - len(failed))
        metrics.REFRESHES.labels(status="error").inc(len(failed))
