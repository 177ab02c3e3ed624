"""The `items` topic: the item catalog, keyed by item id (value: stream/messages.py `CatalogItem`).

    catalog service, `mindstream produce --items FILE`, a worker's first click of a new item ──► items
    items ──► every worker (its own group-less consumer, from the start) ──► ReleaseRegistry.add_item

Every worker must hear every item, as every worker hears every release (stream/worker/hotswap.py): a Faust agent in
the worker group would give each partition to one member only. The follower reads all partitions from the
beginning, so a worker restarted on an empty state directory rebuilds its new items from the topic itself
(declared compacted: the latest record per item is what counts). A click that names the category of an item
the catalog lacks is announced here by the interest agent, so other workers and later restarts know it too.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from stream.config import Settings
from stream.kafka_security import aiokafka_kwargs
from stream.messages import CatalogItem, MessageError
from stream.monitoring import metrics
from stream.topology import ITEMS

if TYPE_CHECKING:  # `mindstream produce --items` and `retrain` import this module without the worker's stack
    import faust

    from stream.worker.releases import ReleaseRegistry

log = logging.getLogger(__name__)

# the `source` label of mindstream_new_items_total: where the worker heard of the item
ITEMS_SOURCE = ITEMS.name
CLICK_SOURCE = "click"


def record(item: CatalogItem) -> tuple[bytes, bytes]:
    """The `items` record of `item`: (key, value)."""
    return item.item_id.encode("utf-8"), item.to_json()


def read_catalog(path: Path) -> Iterator[CatalogItem]:
    """A catalog file, JSONL or CSV (`item_id,category[,ts]`), in file order; a bad row raises
    DataError(`file:line: ...`)."""
    from model.data import iter_json_objects

    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            rows = ((n, {k: v for k, v in row.items() if v not in (None, "")})
                    for n, row in enumerate(csv.DictReader(f), 2))
            yield from _checked(path, rows)
    else:
        yield from _checked(path, iter_json_objects(path))


def _checked(path: Path, rows: Iterator[tuple[int, dict]]) -> Iterator[CatalogItem]:
    from model.data import DataError

    for n, row in rows:
        if "ts" in row and isinstance(row["ts"], str):
            try:
                row["ts"] = float(row["ts"])
            except ValueError:
                raise DataError(f"{path}:{n}: ts is not a number: {row['ts']!r}") from None
        try:
            yield CatalogItem.from_json(json.dumps(row).encode("utf-8"))
        except MessageError as e:
            raise DataError(f"{path}:{n}: {e}") from None


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> dict[str, str]:
    """item id -> category of every valid `items` record with a category (the latest wins), read to the end."""
    from stream.topic_reader import read_to_end

    out: dict[str, str] = {}
    for record in read_to_end(bootstrap, [topic], timeout_s):
        try:
            item = CatalogItem.from_json(record.value)
        except MessageError:
            continue
        if item.category is not None:
            out[item.item_id] = item.category
    return out


def register(registry: ReleaseRegistry, item: CatalogItem, source: str) -> bool:
    """Add a catalog item to the registry; counted in mindstream_new_items_total when the served release
    gained it (an item it was not trained on, in a category it knows)."""
    if item.category is None or not registry.add_item(item.item_id, item.category):
        return False
    metrics.NEW_ITEMS.labels(source=source).inc()
    return True


def install(app: faust.App, settings: Settings, registry: ReleaseRegistry, poll_ms: int = 200) -> faust.types.TopicT:
    """Add the items-following task to `app`; returns the `items` topic (the interest agent announces to it)."""
    from aiokafka import AIOKafkaConsumer

    from stream.topic_reader import assign_all

    topic_name = settings.topic(ITEMS.name)
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw", partitions=settings.partitions,
                      compacting=ITEMS.compacted)

    @app.task
    async def follow_items() -> None:
        await topic.maybe_declare()
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=poll_ms, **aiokafka_kwargs())
        await consumer.start()
        try:
            await consumer.seek_to_beginning(*await assign_all(consumer, topic_name, poll_ms))
            while True:
                for records in (await consumer.getmany(timeout_ms=poll_ms)).values():
                    for record in records:
                        apply(record.value)
        finally:
            await consumer.stop()

    def apply(raw: bytes | None) -> None:
        try:
            item = CatalogItem.from_json(raw)
        except MessageError as e:
            metrics.ITEM_RECORDS.labels(status="invalid").inc()
            log.warning("items record skipped: %s", e)
            return
        metrics.ITEM_RECORDS.labels(status="ok").inc()
        try:
            register(registry, item, ITEMS_SOURCE)
        except Exception:  # a bug in one record must not end the task: the worker would hear no item again
            log.exception("items record for %r failed", item.item_id)

    return topic


async def announce(topic: faust.types.TopicT, item_id: str, category: str) -> None:
    """Publish an item first seen in a click (with its category) to `items`."""
    key, value = record(CatalogItem(item_id, category, time.time()))
    await topic.send(key=key, value=value)
