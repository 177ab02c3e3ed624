"""The recall agent: user-interests -> one ANN search per interest -> merged top N -> candidates.

An item's score for a user is the paper's: max over the user's K'u interests of e_i · v_u^k. Each
message is searched in the index of the model version that computed its interests (never another
version's index: the vector spaces differ). The latest list per user is kept in a table for the
online hit rate and the per-user endpoint.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import faust
import numpy as np

from model.release import Release
from stream import metrics
from stream.app import table_options
from stream.config import CANDIDATES, USER_INTERESTS, Settings
from stream.releases import ReleaseRegistry

log = logging.getLogger(__name__)


def recall(release: Release, interests: np.ndarray, history: set[str], top_n: int) -> list[dict[str, Any]]:
    """Top `top_n` items for interests [K', d], items in `history` excluded, best first:
    [{"item_id", "score", "interest"}] where `interest` is the index of the interest that scored it."""
    interests = np.ascontiguousarray(np.atleast_2d(interests), dtype=np.float32)
    n_items = len(release.item_ids)
    seen = sum(1 for i in history if i in release.item_index)
    # ask for enough that top_n survive the history filter, whatever the history holds
    k = min(n_items, top_n + seen)
    if k <= 0:
        return []
    labels, distances = release.index.knn_query(interests, k=k, num_threads=1)
    scores = 1.0 - distances  # hnswlib 'ip' distance is 1 - dot product
    best: dict[int, tuple[float, int]] = {}
    for interest in range(labels.shape[0]):
        for label, score in zip(labels[interest].tolist(), scores[interest].tolist(), strict=True):
            if release.item_ids[label] in history:
                continue
            current = best.get(label)
            if current is None or score > current[0]:
                best[label] = (score, interest)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top_n]
    return [{"item_id": release.item_ids[label], "score": float(score), "interest": interest}
            for label, (score, interest) in ranked]


class BadInterests(ValueError):
    pass


def parse_interests(raw: bytes | None) -> dict[str, Any]:
    """A user-interests value, checked enough that recall cannot fail on it."""
    try:
        msg = json.loads(raw or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInterests(f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise BadInterests("not an object")
    for name in ("user_id", "model_version"):
        if not isinstance(msg.get(name), str):
            raise BadInterests(f"{name} missing or not a string")
    try:
        vectors = np.asarray(msg.get("interests"), dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise BadInterests(f"interests: {e}") from None
    if vectors.ndim != 2 or vectors.shape[0] == 0 or not np.isfinite(vectors).all():
        raise BadInterests(f"interests must be a non-empty K' x d matrix of finite numbers, got {vectors.shape}")
    msg["interests"] = vectors
    return msg


def install(app: faust.App, settings: Settings, registry: ReleaseRegistry) -> faust.Table:
    """Declare the recall agent on `app`; returns its `latest-candidates` table (user id -> the candidates
    value last published), for the online hit rate and the per-user endpoint."""
    interests_topic = app.topic(settings.topic(USER_INTERESTS), key_serializer="raw", value_serializer="raw",
                                partitions=settings.partitions)
    candidates_topic = app.topic(settings.topic(CANDIDATES), key_serializer="raw", value_serializer="json",
                                 partitions=settings.partitions)
    # user id -> the candidates value last published for the user
    latest = app.Table("latest-candidates", key_type=str, partitions=settings.partitions,
                       help="latest candidate list per user", options=table_options())

    @app.agent(interests_topic, name="recall")
    async def recall_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                msg = parse_interests(event.value)
            except BadInterests as e:
                log.warning("user-interests record at %s[%s]@%s skipped: %s", event.message.topic,
                            event.message.partition, event.message.offset, e)
                continue
            release = registry.get(msg["model_version"])
            if release is None:
                log.warning("no release %s for user %s: interests skipped", msg["model_version"], msg["user_id"])
                continue
            if msg["interests"].shape[1] != release.d:
                log.warning("interests of user %s have d=%d, release %s has d=%d: skipped", msg["user_id"],
                            msg["interests"].shape[1], release.version, release.d)
                continue
            with metrics.RECALL_SECONDS.time():
                items = recall(release, msg["interests"], set(map(str, msg.get("history") or ())), settings.top_n)
            value = {
                "user_id": msg["user_id"],
                "model_version": release.version,
                "items": items,
                "event_ts": msg.get("event_ts"),
                "published_ts": time.time(),
            }
            if msg.get("refresh"):
                value["refresh"] = True  # recomputed by `mindstream refresh`, not by a click
            await candidates_topic.send(key=msg["user_id"].encode("utf-8"), value=value)
            latest[msg["user_id"]] = value
            event_ts = msg.get("event_ts")
            if isinstance(event_ts, int | float) and not msg.get("refresh"):
                metrics.EVENT_TO_CANDIDATES_SECONDS.observe(max(0.0, value["published_ts"] - float(event_ts)))

    return latest
