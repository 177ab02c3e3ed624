"""Recall: a user's interests -> one ANN search per interest -> merged top N -> candidates.

    user-interests ──► recall agent (role recall) ─┐
    interest agent, in memory (role all) ──────────┴─► batched hnswlib search, max over interests ──► candidates

An item's score for a user is the paper's: max over the user's K'u interests of e_i · v_u^k. Interests are
searched in the index of the model version that computed them (never another version's index: the vector
spaces differ), which holds the version's trained items and its new items (model/new_items.py). The latest
list per user is kept in a table for the online hit rate and the per-user endpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import faust
import numpy as np

from model.ann import merge, search_k
from model.release import Release
from stream.config import Settings
from stream.messages import Candidate, Candidates, MessageError, UserInterests
from stream.monitoring import metrics
from stream.topology import CANDIDATES, LATEST_CANDIDATES, USER_INTERESTS
from stream.worker.app import current_event, table_options
from stream.worker.batching import take_ready
from stream.worker.releases import ReleaseRegistry

log = logging.getLogger(__name__)


@dataclass
class RecallRequest:
    """One user's interests to search: `interests` [K', d] computed by `release` (whose index is searched)."""

    user_id: str
    release: Release
    interests: np.ndarray
    history: list[str]
    event_ts: float | None
    event: faust.types.EventT  # the record that caused it: its partition is the user's table partition
    refresh: bool = False


def recall(release: Release, interests: np.ndarray, history: set[str], top_n: int) -> list[Candidate]:
    """Top `top_n` items for interests [K', d], items in `history` excluded, best first:
    [{"item_id", "score", "interest"}] where `interest` is the index of the interest that scored it."""
    return recall_batch(release, [(interests, history)], top_n)[0]


def recall_batch(release: Release, queries: list[tuple[np.ndarray, set[str] | list[str]]],
                 top_n: int) -> list[list[Candidate]]:
    """`recall` for several users of one release: one hnswlib query for every interest of the batch.

    Per user, an item's score is the max over its interests of e_i . v_u^k (model/ann.py `merge`: ties go to the
    smaller item index, then the smaller interest index, so the order is deterministic)."""
    if not queries:
        return []
    blocks = [np.atleast_2d(np.asarray(interests, dtype=np.float32)) for interests, _ in queries]
    seen = [np.fromiter((lab for lab in map(release.label, set(history)) if lab is not None), dtype=np.int64)
            for _, history in queries]
    k = search_k(release.n_indexed, top_n, seen)
    if k <= 0:
        return [[] for _ in queries]
    rows = release.search(np.ascontiguousarray(np.concatenate(blocks)), k)
    out: list[list[Candidate]] = []
    row = 0
    for block, seen_labels in zip(blocks, seen, strict=True):
        label, score, interest = merge(rows[row : row + block.shape[0]], seen_labels, top_n)
        row += block.shape[0]
        ids = release.item_ids_of(label)
        out.append([{"item_id": item, "score": sc, "interest": it}
                    for item, sc, it in zip(ids, score.tolist(), interest.tolist(), strict=True)])
    return out


class CandidatesPublisher:
    """Searches a batch of `RecallRequest`s and publishes one `candidates` value per user, by writing it to the
    `latest-candidates` table (the online hit rate and the /users pages read it) whose changelog is the
    candidates topic itself: one record per list serves the consumers and the table's recovery. A changelog of
    its own would have written a second full copy of every list (a fifth of the records a click caused).

    The value is encoded to JSON once: the same bytes go to the topic and to RocksDB."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.top_n = settings.top_n
        self.topic = app.topic(settings.topic(CANDIDATES.name), key_serializer="raw", value_serializer="raw",
                               partitions=settings.partitions)
        # user id -> the candidates value last published for the user (JSON bytes; read with latest_candidates)
        # bytes keys and values: Faust's raw serializer (a str key would be JSON-quoted), so a changelog record is
        # the topic's contract: the UTF-8 user id and the JSON value
        self.latest = app.Table(LATEST_CANDIDATES.name, key_type=bytes, value_type=bytes,
                                partitions=settings.partitions, changelog_topic=self.topic,
                                help="latest candidate list per user", options=table_options())

    async def publish(self, requests: list[RecallRequest]) -> float:
        """Search and publish; returns the seconds spent sending (the caller's produce stage: with `--role all`
        the interests' sends belong to it too). The search stage is observed here."""
        by_release: dict[str, list[RecallRequest]] = {}
        for r in requests:
            by_release.setdefault(r.release.version, []).append(r)
        search_s = produce_s = 0.0
        for batch in by_release.values():
            try:
                started = time.perf_counter()
                lists = recall_batch(batch[0].release, [(r.interests, r.history) for r in batch], self.top_n)
                searched = time.perf_counter()
                search_s += searched - started
                per_user = (searched - started) / len(batch)  # the histogram is per user
                for r, items in zip(batch, lists, strict=True):
                    metrics.RECALL_SECONDS.observe(per_user)
                    await self._send(r, items)
                produce_s += time.perf_counter() - searched
            except Exception:  # a bug must cost these lists (the next click recomputes them), not the worker
                log.exception("recall of %d users of %s failed", len(batch), batch[0].release.version)
        if requests:
            metrics.STAGE_SECONDS.labels(stage="search").observe(search_s)
        return produce_s

    async def _send(self, r: RecallRequest, items: list[Candidate]) -> None:
        value = Candidates(r.user_id, r.release.version, items, r.event_ts, time.time(), r.refresh)
        raw = value.to_json()
        with current_event(r.event):  # the table partition, and the topic's, is the user's click's
            self.latest[r.user_id.encode("utf-8")] = raw  # -> the candidates topic, as the table's changelog
        if isinstance(r.event_ts, int | float) and not r.refresh:
            metrics.EVENT_TO_CANDIDATES_SECONDS.observe(max(0.0, value.published_ts - float(r.event_ts)))


def latest_candidates(table: faust.Table, user_id: str) -> Candidates | None:
    """The `candidates` value last published for `user_id` (a `latest-candidates` table read), or None."""
    raw = table.get(user_id.encode("utf-8"))
    return Candidates.from_json(raw) if raw else None


def request_from(event: faust.types.EventT, registry: ReleaseRegistry) -> RecallRequest | None:
    """The recall request of a user-interests record; None (logged) when it cannot be searched."""
    try:
        msg = UserInterests.from_json(event.value)
    except MessageError as e:
        log.warning("user-interests record at %s[%s]@%s skipped: %s", event.message.topic,
                    event.message.partition, event.message.offset, e)
        return None
    # the index of the version that computed the interests, never another one (their vector spaces differ)
    release = registry.get(msg.model_version)
    if release is None:
        log.warning("no release %s for user %s: interests skipped", msg.model_version, msg.user_id)
        return None
    if msg.interests.shape[1] != release.d:
        log.warning("interests of user %s have d=%d, release %s has d=%d: skipped", msg.user_id,
                    msg.interests.shape[1], release.version, release.d)
        return None
    return RecallRequest(msg.user_id, release, msg.interests, msg.history, msg.event_ts, event, msg.refresh)


def install(app: faust.App, settings: Settings, registry: ReleaseRegistry,
            consume: bool = True) -> CandidatesPublisher:
    """Declare the candidates output on `app` and, with `consume`, the recall agent that feeds it from
    user-interests (the recall role). With `--role all` the interest agent hands its interests to the
    returned publisher in memory instead: one hop and one JSON round trip less per click."""
    publisher = CandidatesPublisher(app, settings)
    if not consume:
        return publisher
    interests_topic = app.topic(settings.topic(USER_INTERESTS.name), key_serializer="raw", value_serializer="raw",
                                partitions=settings.partitions)

    @app.agent(interests_topic, name="recall")
    async def recall_agent(stream: faust.StreamT) -> None:
        async for events in take_ready(stream, settings.batch_max):
            requests = [r for r in (request_from(e, registry) for e in events) if r is not None]
            if requests:
                metrics.STAGE_SECONDS.labels(stage="produce").observe(await publisher.publish(requests))

    return publisher
