"""Settings of the worker and of its tables' stores. Each is declared once, with `setting()` (model/settings.py):
its default, its help and the environment variable that overrides the default; `mindstream worker`'s flags, their
`--help`, `Settings.from_env` and the README's worker table are derived from that declaration."""

from __future__ import annotations

from dataclasses import dataclass

from model.settings import env_name, env_values, setting, settings_of

ROLES = ("all", "interest", "recall")


@dataclass(frozen=True)
class Settings:
    """`mindstream worker`'s settings: each is a flag, and the environment variable MINDSTREAM_<FLAG>."""

    bootstrap: str = setting("127.0.0.1:9092", "Kafka bootstrap servers host:port[,host:port]", env="KAFKA_BOOTSTRAP")
    # models/<version>/ and models/CURRENT
    models_dir: str = setting("models", "model releases directory holding CURRENT", aliases=("--models",))
    release: str = setting("", "this release directory instead of the one CURRENT names")
    # deployments can share a cluster
    topic_prefix: str = setting("", "prefix of every topic name and of the Faust app id")
    app_id: str = setting("mindstream", "Faust app id (consumer group, changelog topic prefix)")
    # one subdirectory per app id; the Kafka changelog is the backup
    state_dir: str = setting("state", "directory of the RocksDB table files")
    # Faust's web server: /metrics and the monitoring endpoints
    web_bind: str = setting("127.0.0.1", "address of the HTTP server (/metrics)")
    web_port: int = setting(6066, "port of the HTTP server (/metrics)")
    # keys are user ids, so this bounds the scale-out
    partitions: int = setting(12, "partitions of the topics the worker creates")
    role: str = setting("all", "agents to run: all, interest (clicks -> user-interests) or recall (user-interests "
                        "-> candidates)", choices=ROLES)
    top_n: int = setting(100, "candidates per user")
    # a batch is what the last fetches brought (stream/worker/batching.py): one click when the rate is low, up to
    # this under load; the users of a batch share one ONNX run and one hnswlib query
    batch_max: int = setting(64, "most clicks per batch")
    # a larger bound keeps history for later models
    max_len: int = setting(0, "behavior sequence bound; 0 = the release's max_len (a larger value keeps more "
                           "history)")
    dedup_size: int = setting(256, "recent event ids remembered per user for de-duplication")
    max_event_bytes: int = setting(16384, "larger click records are dead-lettered unread")
    # 1 = one record per produce request. Table recovery does not depend on it: stream/worker/faust_patches.py
    # reads each changelog to its real end, whatever the broker reports.
    producer_max_batch_bytes: int = setting(0, "producer batch size in bytes, 0 = Faust's default (16384)")
    # every record a click causes (changelog, interests, candidates) is produced; fewer, larger produce requests
    # cost less CPU at high rates and add at most this to the candidates' delivery
    producer_linger_ms: float = setting(0.0, "longest wait, in ms, for a produce batch to fill")
    # Apache Kafka answers a fetch as soon as data arrives, so this costs nothing there. Tansu holds every fetch
    # about this long (Faust's fixed 1500 ms added seconds per hop), but 5 ms made the worker fetch so often that
    # Tansu's cost per fetch, which grows with the data it holds, stalled the worker after ~20k clicks
    # (docs/reliability.md §5); 50 ms does not.
    fetch_max_wait_ms: int = setting(50, "longest time, in ms, the broker may hold a fetch for more data (Faust's "
                                     "fixed 1500 adds up to 1.5 s per hop on a quiet partition)")
    # model/new_items.py
    max_new_items: int = setting(100_000, "most new items (not in the served release, indexed live by category) "
                                 "per model version; past it the oldest go")
    log_level: str = setting("info", "log level (debug, info, warning, error)")

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from MINDSTREAM_* variables (and KAFKA_BOOTSTRAP); unset ones keep the defaults above."""
        return cls(**env_values(cls))

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

    Read from the environment only (MINDSTREAM_ROCKSDB_*), not yet `mindstream worker` flags.
    """

    # 2, not 8: in the soak (4 partitions x 2 tables, 50 clicks/s) an 8 MiB memtable had not filled after 300 s,
    # so RSS grew as with Faust's defaults (+10.9 % vs +10.4 % at 300 s); with 2 MiB it levelled off (+3.7 %)
    # (docs/reliability.md §5)
    write_buffer_mib: int = setting(2, "memtable size per database, in MiB, before it is flushed to an SST file",
                                    env="MINDSTREAM_ROCKSDB_WRITE_BUFFER_MIB")
    max_write_buffers: int = setting(2, "memtables per database (the active one plus those waiting for their "
                                     "flush)", env="MINDSTREAM_ROCKSDB_MAX_WRITE_BUFFERS")
    block_cache_mib: int = setting(8, "block cache (uncompressed blocks read from SST files) per database, in MiB",
                                   env="MINDSTREAM_ROCKSDB_BLOCK_CACHE_MIB")

    @classmethod
    def from_env(cls) -> RocksDBSettings:
        settings = cls(**env_values(cls))
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


# field -> environment variable, for the code that sets a worker's environment (tests, demo, benchmarks)
ROCKSDB_ENV_NAMES: dict[str, str] = {f.name: env_name(f) for f in settings_of(RocksDBSettings)}
ENV_NAMES: dict[str, str] = {f.name: env_name(f) for f in settings_of(Settings)}

