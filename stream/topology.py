"""The topology of a deployment on one screen: every topic and table, its key, its value type and who writes and
reads it. Names are base names: `Settings.topic()` prepends the deployment's topic prefix; the behaviors table's
changelog topic is Faust's `<app id>-<table>-changelog` (the app id of stream/worker/app.py, prefix and role
included); latest-candidates writes to the candidates topic.
The value types are in stream/messages.py (clicks: stream/events.py); the wire formats in docs/schemas/.

    clicks ──► interests agent ──► user-interests ──► recall agent ──► candidates
      │          │   │   (--role all: to recall in memory)      = latest-candidates table's changelog
      │          │   ├── behaviors table
      │          │   ├── bad click ──► clicks-dlq
      │          │   ├── first click of a new item with its category ──► items
      │          │   └── --role all: online hit rate (reads latest-candidates)
      └──► recall role: online hit-rate agent (reads latest-candidates)
    refresh-requests ──► refresh agent (reads behaviors) ──► user-interests   (`mindstream refresh`)
    model-releases ──► every worker's hot swap              (`mindstream retrain` / `rollback`)
    items ──► every worker's catalog                        (`mindstream produce --items`, the interests agent)

Every name is spelled here only; tests/test_topology.py fails on a copy anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.events import Click
from stream.messages import (
    Announcement,
    Candidates,
    CatalogItem,
    DeadLetter,
    RefreshRequest,
    UserInterests,
)
from stream.worker.behaviors import Behaviors


@dataclass(frozen=True)
class Topic:
    name: str  # base name, without the deployment's prefix
    key: str  # what the record key holds (UTF-8)
    value: type  # the value's type; its from_json judges a record (clicks: stream.events.parse_click)
    compacted: bool = False  # only the latest record per key counts
    partitions: int | None = None  # None: the worker's partition count (`--partitions`)


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    value: type  # what the worker stores per key (behaviors: its to_state() dict; latest-candidates: to_json())

    def changelog(self, app_id: str) -> str:
        """The table's changelog topic in the app `app_id` (Faust's name; latest-candidates has the candidates
        topic instead)."""
        return f"{app_id}-{self.name}-changelog"


CLICKS = Topic("clicks", key="user id", value=Click)
USER_INTERESTS = Topic("user-interests", key="user id", value=UserInterests)
CANDIDATES = Topic("candidates", key="user id", value=Candidates)
CLICKS_DLQ = Topic("clicks-dlq", key="the click's key", value=DeadLetter)
REFRESH_REQUESTS = Topic("refresh-requests", key="user id", value=RefreshRequest)
MODEL_RELEASES = Topic("model-releases", key="current", value=Announcement, partitions=1)  # totally ordered
ITEMS = Topic("items", key="item id", value=CatalogItem, compacted=True)

# the user's behavior sequence, written by the interests agent only (interest role, or all)
BEHAVIORS = Table("behaviors", key="user id", value=Behaviors)
# the candidates value last published for the user (recall role, or all): the online hit rate and /users read it.
# Its changelog is the candidates topic (stream/worker/recall.py): writing the table publishes the list.
LATEST_CANDIDATES = Table("latest-candidates", key="user id", value=Candidates)

TOPICS = (CLICKS, USER_INTERESTS, CANDIDATES, CLICKS_DLQ, REFRESH_REQUESTS, MODEL_RELEASES, ITEMS)
TABLES = (BEHAVIORS, LATEST_CANDIDATES)
# created before a worker starts, at the worker's partition count (docker-compose's kafka-init,
# `mindstream produce`); model-releases (one partition) and items are declared by the worker itself
PIPELINE = (CLICKS, USER_INTERESTS, CANDIDATES, CLICKS_DLQ, REFRESH_REQUESTS)
