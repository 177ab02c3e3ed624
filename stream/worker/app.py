"""The Faust App of a mindstream worker. Agents, their topics and their tables are declared where they are
used (stream/worker/interests.py, stream/worker/recall.py), under the names of stream/topology.py; this module
holds what they share."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faust
from faust.streams import _current_event

from stream.config import RocksDBSettings, Settings
from stream.kafka_security import faust_kwargs
from stream.monitoring import metrics
from stream.worker import faust_patches


def app_id(settings: Settings) -> str:
    """The consumer group and changelog namespace. Roles get their own: Faust's partition assignor expects
    every member of a group to consume the same topics."""
    base = settings.topic_prefix + settings.app_id
    return base if settings.role == "all" else f"{base}-{settings.role}"


def create_app(settings: Settings) -> faust.App:
    faust_patches.install(settings.bootstrap, settings.fetch_max_wait_ms)
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    extra = {"producer_max_batch_size": settings.producer_max_batch_bytes} if settings.producer_max_batch_bytes else {}
    if settings.producer_linger_ms:
        extra["producer_linger"] = settings.producer_linger_ms / 1000.0
    app = faust.App(
        app_id(settings),
        broker=[f"kafka://{host.strip()}" for host in settings.bootstrap.split(",") if host.strip()],
        store="rocksdb://",
        datadir=str(Path(settings.state_dir) / app_id(settings)),
        # Tansu holds a JoinGroup for the whole rebalance timeout (docs/platform.md#group-joins-are-held):
        # 5 s, not Faust's 30 s
        broker_rebalance_timeout=5.0,
        # a member that vanished without leaving the group (SIGKILL, or a SIGTERM whose LeaveGroup did not go
        # out) holds its partitions until this expires: 10 s, not Faust's 60 s (heartbeats go every 3 s)
        broker_session_timeout=10.0,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        value_serializer="json",
        web_enabled=True,
        web_bind=settings.web_bind,
        web_host=settings.web_bind,
        web_port=settings.web_port,
        web_in_thread=False,
        **extra,
        **faust_kwargs(),  # SASL/SSL (stream/kafka_security.py); nothing for PLAINTEXT
    )

    @app.page("/metrics")
    async def prometheus_metrics(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        body, content_type = metrics.render()
        return self.bytes(body, content_type=content_type.split(";")[0])

    return app


def table_options() -> dict[str, int]:
    """`options=` of every `app.Table`: bounded RocksDB memory (stream/config.py RocksDBSettings, env
    MINDSTREAM_ROCKSDB_*) instead of Faust's defaults (64 MiB x 3 write buffers, 2 GiB block cache per partition)."""
    return RocksDBSettings.from_env().table_options()


@contextmanager
def current_event(event: faust.types.EventT) -> Iterator[None]:
    """Make `event` the current event of this task while a batched event's table reads and writes happen.

    Faust picks the RocksDB partition and the changelog partition of a table access from the current event
    (a context variable); inside a `take_ready` batch that is unset or another partition's event. Only this
    task's context changes: the stream's own iteration, in its background task, is not disturbed.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
