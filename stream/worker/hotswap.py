"""Hot swap: follow `model-releases` and switch the served release without a restart (docs/hotswap.md).

Every worker must hear every announcement. A Faust agent consumes in the worker's consumer group, where a
one-partition topic reaches a single member, so the other workers of the group would keep the old model.
Instead a Faust task (started and stopped with the app) reads the topic with its own group-less consumer,
all partitions assigned, starting at the last record so a release announced while the worker was starting
is not missed.

Per announcement: the release is loaded and verified OFF the event loop (load_release checks every sha256,
loads the ONNX tower, checks dims against the index and runs a smoke inference: seconds of CPU that must not
stall the agents), then the announced manifest_sha256 and version are compared with what was loaded, and
then the catalog's new items the release was not trained on are indexed in it (also off the loop), and
only then `registry.serve` switches it in. That switch is one synchronous call on the event loop, so an
agent sees the old release or the new one, never half of each; the interest agent takes `registry.current`
once per batch and stamps that version on its output. A release that fails is rejected, counted
(mindstream_model_swaps_total{result="rejected"}) and logged; the serving release stays.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import faust

from model.release import Release, ReleaseError, load_release
from stream.config import Settings
from stream.kafka_security import aiokafka_kwargs
from stream.messages import Announcement, MessageError
from stream.monitoring import metrics
from stream.topic_reader import assign_all
from stream.topology import MODEL_RELEASES
from stream.worker.releases import ReleaseRegistry

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

log = logging.getLogger(__name__)

OK = "ok"
REJECTED = "rejected"
SKIPPED = "skipped"  # the announced version is already served (e.g. the last record, re-read at start)


def verify(announcement: Announcement, models_dir: str | Path | None) -> Release:
    """Load and verify the announced release (blocking; run it in an executor). Raises ReleaseError."""
    release = load_release(announcement.release_dir(models_dir))
    if release.version != announcement.version:
        raise ReleaseError(f"{release.path}: holds version {release.version}, announced {announcement.version}")
    if release.manifest_sha256 != announcement.manifest_sha256:
        raise ReleaseError(
            f"{release.path}: manifest sha256 {release.manifest_sha256[:12]}... differs from the announced "
            f"{announcement.manifest_sha256[:12]}... (changed after it was announced?)"
        )
    return release


async def handle(raw: bytes | None, registry: ReleaseRegistry, models_dir: str | Path | None) -> str:
    """Process one model-releases record: OK (now serving it), REJECTED or SKIPPED."""
    try:
        announcement = Announcement.from_json(raw)
    except MessageError as e:
        metrics.MODEL_SWAPS.labels(result=REJECTED).inc()
        log.error("model-releases record rejected: %s", e)
        return REJECTED
    try:
        if registry.current.version == announcement.version:
            return SKIPPED
    except LookupError:
        pass  # nothing served yet: any verified release is an improvement
    loop = asyncio.get_running_loop()
    try:
        release = await loop.run_in_executor(None, verify, announcement, models_dir)
    except Exception as e:  # ReleaseError, or anything a damaged file makes a library raise: never serve it
        metrics.MODEL_SWAPS.labels(result=REJECTED).inc()
        log.error("release %s rejected, still serving %s: %s", announcement.version, _serving(registry), e)
        return REJECTED
    # the catalog's new items indexed in the new version's own vectors, off the loop (release not held yet:
    # nothing else touches its index); those registered meanwhile are indexed by serve()
    await loop.run_in_executor(None, registry.adopt, release, list(registry.catalog.items()))
    before = _serving(registry)
    registry.serve(release)  # synchronous: the one atomic switch
    metrics.MODEL_SWAPS.labels(result=OK).inc()
    log.info("model swapped %s -> %s", before, release.version)
    return OK


def _serving(registry: ReleaseRegistry) -> str | None:
    try:
        return registry.current.version
    except LookupError:
        return None


def install(app: faust.App, settings: Settings, registry: ReleaseRegistry, poll_ms: int = 500) -> None:
    """Add the release-following task to `app` (every role: both agents serve from the registry)."""
    from aiokafka import AIOKafkaConsumer

    topic_name = settings.topic(MODEL_RELEASES.name)
    # declared so the topic exists (one partition: announcements are totally ordered) before it is read
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw", partitions=MODEL_RELEASES.partitions)
    models_dir = settings.models_dir or None

    @app.task
    async def follow_releases() -> None:
        await topic.maybe_declare()
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=poll_ms, **aiokafka_kwargs())
        await consumer.start()
        try:
            tps = await assign_all(consumer, topic_name, poll_ms)
            latest = await _catch_up(consumer, tps, poll_ms)
            if latest is not None:
                await _guarded(latest.value, registry, models_dir)
            while True:
                batches = await consumer.getmany(timeout_ms=poll_ms)
                for records in batches.values():
                    for record in records:
                        await _guarded(record.value, registry, models_dir)
        finally:
            await consumer.stop()


async def _catch_up(consumer: AIOKafkaConsumer, tps: list[TopicPartition], poll_ms: int) -> ConsumerRecord | None:
    """The newest record up to the high watermark at start (None on an empty topic); older announcements are
    history, not instructions. Reading starts one record before the listed end: Tansu lists the base offset
    of the last batch there, Apache Kafka the end itself; the high watermark of the fetch is exact on both."""
    end = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(0, end[tp] - 1))
    latest = None
    while True:
        batches = await consumer.getmany(timeout_ms=poll_ms)
        for records in batches.values():
            if records and (latest is None or records[-1].timestamp >= latest.timestamp):
                latest = records[-1]
        positions = [(await consumer.position(tp), consumer.highwater(tp)) for tp in tps]
        if all(hw is not None and pos >= hw for pos, hw in positions):
            return latest


async def _guarded(raw: bytes | None, registry: ReleaseRegistry, models_dir: str | Path | None) -> None:
    try:
        await handle(raw, registry, models_dir)
    except Exception:  # a bug in one announcement must not end the task: the worker would never swap again
        metrics.MODEL_SWAPS.labels(result=REJECTED).inc()
        log.exception("model-releases record failed")
