"""Worker settings. Every setting has an environment variable and a documented default; `mindstream worker`
turns each into a flag whose default is read from that variable, so flags win over the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

ROLES = ("all", "interest", "recall")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    # Kafka bootstrap servers, host:port[,host:port]
    bootstrap: str = "127.0.0.1:9092"
    # directory of model releases with a CURRENT file (models/<version>/, models/CURRENT)
    models_dir: str = "models"
    # one release directory to serve instead of models/CURRENT (empty: use CURRENT)
    release: str = ""
    # prepended to every topic name, and to the Faust app id, so deployments can share a cluster
    topic_prefix: str = ""
    app_id: str = "mindstream"
    # RocksDB table files live here (one subdirectory per app id); the Kafka changelog is the backup
    state_dir: str = "state"
    # Faust's web server: /metrics (and the monitoring endpoints)
    web_bind: str = "127.0.0.1"
    web_port: int = 6066
    # partitions of the topics the worker declares; keys are user ids, so this bounds the scale-out
    partitions: int = 12
    role: str = "all"
    # candidates kept per user
    top_n: int = 100
    # users whose clicks arrive within the window share one ONNX run (bounds the added latency)
    batch_max: int = 64
    batch_window_ms: float = 5.0
    # behavior sequence bound; 0 = the release's max_len. A larger bound keeps history for later models.
    max_len: int = 0
    # recent event ids remembered per user for de-duplication
    dedup_size: int = 256
    # larger click payloads are dead-lettered unread
    max_event_bytes: int = 16384
    # 0 = Faust's default (16 KiB). 1 = one record per produce request. Table recovery does not depend on it:
    # stream/worker/faust_patches.py reads each changelog to its real end, whatever the broker reports.
    producer_max_batch_bytes: int = 0
    # how long the producer waits to fill a batch (every record a click causes: changelog, interests, candidates);
    # fewer, larger produce requests cost less CPU at high rates and add at most this to the candidates' delivery
    producer_linger_ms: float = 0.0
    # how long the broker may hold a fetch waiting for data. Apache Kafka answers as soon as data arrives, so
    # this costs nothing there. Tansu holds every fetch about this long (Faust's fixed 1500 ms added seconds per
    # hop), but 5 ms made the worker fetch so often that Tansu's cost per fetch, which grows with the data it
    # holds, stalled the worker after ~20k clicks (docs/reliability.md §5); 50 ms does not.
    fetch_max_wait_ms: int = 50
    # new items (not in the served release, indexed live with their category vector) per model version; past it
    # the oldest go (model/new_items.py)
    max_new_items: int = 100_000
    log_level: str = "info"

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from MINDSTREAM_* variables (and KAFKA_BOOTSTRAP); unset ones keep the defaults above."""
        values: dict[str, object] = {}
        for f in fields(cls):
            name = ENV_NAMES[f.name]
            raw = os.environ.get(name)
            if raw is None or raw == "":
                continue
            default = getattr(cls, f.name)
            try:
                values[f.name] = type(default)(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not {type(default).__name__}") from None
        return cls(**values)

    def topic(self, base: str) -> str:
        """The deployment's name of a topic of stream/topology.py (`settings.topic(CLICKS.name)`)."""
        return self.topic_prefix + base

    def runs_interest(self) -> bool:
        return self.role in ("all", "interest")

    def runs_recall(self) -> bool:
        return self.role in ("all", "recall")


MIB = 1 << 20


@dataclass(frozen=True)
class RocksDBSettings:
    """Memory bounds of the RocksDB stores behind the tables. Faust opens one RocksDB database per table per
    partition (2 tables x the partitions a worker holds, standbys included), and its defaults give each a 64 MiB
    write buffer x 3 and a 2 GiB block cache: memtables alone could reach gigabytes before the first flush, so a
    worker's RSS grows with its write volume for a long time (docs/reliability.md, soak). The state here is small
    (a bounded sequence per user), so these bounds cost nothing measurable.

    Read from the environment only (MINDSTREAM_ROCKSDB_*), not yet `mindstream worker` flags. Values in MiB.
    """

    # memtable size per database before it is flushed to an SST file. 2, not 8: in the soak (4 partitions x 2
    # tables, 50 clicks/s) an 8 MiB memtable had not filled after 300 s, so RSS grew as with Faust's defaults
    # (+10.9 % vs +10.4 % at 300 s); with 2 MiB it levelled off (+3.7 %) (docs/reliability.md §5)
    write_buffer_mib: int = 2
    # memtables per database (the active one plus those waiting for their flush)
    max_write_buffers: int = 2
    # block cache (uncompressed blocks read from SST files) per database
    block_cache_mib: int = 8

    @classmethod
    def from_env(cls) -> RocksDBSettings:
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = os.environ.get(ROCKSDB_ENV_NAMES[f.name])
            if raw:
                values[f.name] = int(raw)
        settings = cls(**values)
        if min(settings.write_buffer_mib, settings.max_write_buffers, settings.block_cache_mib) < 1:
            raise ValueError(f"RocksDB settings must be >= 1: {settings}")
        return settings

    def table_options(self) -> dict[str, int]:
        """Keyword options of faust's RocksDBOptions, passed as `app.Table(..., options=...)`. A fresh dict per
        call: Faust's RocksDB store pops keys from the dict it is given."""
        return {"write_buffer_size": self.write_buffer_mib * MIB, "max_write_buffer_number": self.max_write_buffers,
                "block_cache_size": self.block_cache_mib * MIB}

    def bound_mib(self) -> int:
        """Upper bound of memtables + block cache of one database."""
        return self.write_buffer_mib * self.max_write_buffers + self.block_cache_mib


ROCKSDB_ENV_NAMES: dict[str, str] = {
    "write_buffer_mib": "MINDSTREAM_ROCKSDB_WRITE_BUFFER_MIB",
    "max_write_buffers": "MINDSTREAM_ROCKSDB_MAX_WRITE_BUFFERS",
    "block_cache_mib": "MINDSTREAM_ROCKSDB_BLOCK_CACHE_MIB",
}

ENV_NAMES: dict[str, str] = {
    "bootstrap": "KAFKA_BOOTSTRAP",
    "models_dir": "MINDSTREAM_MODELS_DIR",
    "release": "MINDSTREAM_RELEASE",
    "topic_prefix": "MINDSTREAM_TOPIC_PREFIX",
    "app_id": "MINDSTREAM_APP_ID",
    "state_dir": "MINDSTREAM_STATE_DIR",
    "web_bind": "MINDSTREAM_WEB_BIND",
    "web_port": "MINDSTREAM_WEB_PORT",
    "partitions": "MINDSTREAM_PARTITIONS",
    "role": "MINDSTREAM_ROLE",
    "top_n": "MINDSTREAM_TOP_N",
    "batch_max": "MINDSTREAM_BATCH_MAX",
    "batch_window_ms": "MINDSTREAM_BATCH_WINDOW_MS",
    "max_len": "MINDSTREAM_MAX_LEN",
    "dedup_size": "MINDSTREAM_DEDUP_SIZE",
    "max_event_bytes": "MINDSTREAM_MAX_EVENT_BYTES",
    "producer_max_batch_bytes": "MINDSTREAM_PRODUCER_MAX_BATCH_BYTES",
    "producer_linger_ms": "MINDSTREAM_PRODUCER_LINGER_MS",
    "fetch_max_wait_ms": "MINDSTREAM_FETCH_MAX_WAIT_MS",
    "max_new_items": "MINDSTREAM_MAX_NEW_ITEMS",
    "log_level": "MINDSTREAM_LOG_LEVEL",
}
