"""Helpers for tests and tools that drive the real pipeline: an embedded Tansu broker, `mindstream worker`
subprocesses that can be killed (SIGKILL) or stopped, a paced click producer that records what the broker
acknowledged, the ground truth of every user's behavior sequence computed from that log, and readers of the
output topics and of the behaviors table's changelog topic.

Used by tests/test_reliability.py, tests/test_pipeline.py, tests/test_hotswap.py and bench/soak.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from infra.broker import EmbeddedBroker, free_port
from stream import topology
from stream.commands.demo import WorkerProcess

REPO = Path(__file__).resolve().parents[1]
# created before a worker starts, as docker-compose's kafka-init does
TOPICS = tuple(t.name for t in topology.PIPELINE)
APP_ID = "mindstream"
# The behaviors table's changelog.
BEHAVIORS_CHANGELOG = topology.BEHAVIORS.changelog(APP_ID)


@contextlib.contextmanager
def broker_with_topics(log_path: Path, partitions: int, extra: dict[str, int] | None = None
                       ) -> Iterator[EmbeddedBroker]:
    """A fresh broker with the pipeline's topics created at `partitions` (as kafka-init does in docker-compose)
    and the `extra` topics at theirs (topic -> partitions); stopped (and resumed first, should a test have left
    it SIGSTOPped) whatever happens."""
    broker = EmbeddedBroker(log_path=str(log_path)).start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            admin.create_topics([NewTopic(t, partitions, 1) for t in TOPICS]
                                + [NewTopic(t, n, 1) for t, n in (extra or {}).items()])
        finally:
            admin.close()
        yield broker
    finally:
        if broker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


class Worker(WorkerProcess):
    """`mindstream worker` configured by its flags, on a free web port, serving `release` (None: the CURRENT of
    `models_dir`, which defaults to the release's parent). Log level: TEST_WORKER_LOG_LEVEL (default warning)."""

    def __init__(self, bootstrap: str, release: Path | None, state_dir: Path, log: Path, partitions: int,
                 top_n: int = 20, extra: tuple[str, ...] = (), models_dir: Path | None = None) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        args = (*(("--release", str(release)) if release is not None else ()),
                "--models-dir", str(models_dir or release.parent), "--bootstrap", bootstrap,
                "--state-dir", str(state_dir), "--web-port", str(port), "--partitions", str(partitions),
                "--top-n", str(top_n), "--log-level", os.environ.get("TEST_WORKER_LOG_LEVEL", "warning"), *extra)
        super().__init__(log.stem, {}, log, args, web_port=port, cwd=REPO)

    def serving(self) -> bool:
        """The worker's web server answers (the release is loaded and the app started; the consumer group may
        still be joining)."""
        try:
            self.metrics()
            return True
        except OSError:
            return False

    def wait_metrics(self, lines: list[str], timeout_s: float) -> str:
        """The metrics text once it holds every one of `lines` (fails if the worker exits or the timeout passes)."""
        text = ""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError):  # not serving yet
                text = self.metrics()
            if all(line in text.splitlines() for line in lines):
                return text
            time.sleep(0.3)
        raise AssertionError(f"metrics never showed {lines}:\n{text}\n{self.log_path.read_text()[-3000:]}")

    def stop(self, timeout_s: float = 60.0) -> int:
        return super().stop(timeout_s)


@dataclass
class Click:
    event_id: str
    user_id: str
    item_id: str
    ts: float

    def record(self) -> tuple[bytes, bytes]:
        value = {"event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id, "ts": self.ts}
        return self.user_id.encode(), json.dumps(value).encode()


def click_stream(users: int, clicks_per_user: int, items: list[str], t0: float, duplicate_every: int = 0,
                 prefix: str = "u") -> list[Click]:
    """Users' clicks interleaved round-robin, each user's timestamps strictly increasing (ground truth is then
    unambiguous); every `duplicate_every`-th click is sent twice (a producer retry: same event id)."""
    out: list[Click] = []
    n = 0
    for step in range(clicks_per_user):
        for u in range(users):
            n += 1
            c = Click(f"{prefix}{u}-{step}", f"{prefix}{u}", items[(u * 7 + step * 13) % len(items)],
                      t0 + step + u / (users + 1))
            out.append(c)
            if duplicate_every and n % duplicate_every == 0:
                out.append(c)
    return out


@dataclass
class ProducedLog:
    """What the broker acknowledged (at-least-once: what the pipeline must hold)."""

    clicks: list[Click] = field(default_factory=list)
    bad: list[bytes] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def ground_truth(self, max_len: int) -> dict[str, list[str]]:
        """user -> item ids of the expected behavior sequence: unique event ids, in ts order, newest max_len."""
        unique: dict[str, Click] = {}
        for c in self.clicks:
            unique.setdefault(c.event_id, c)
        by_user: dict[str, list[Click]] = {}
        for c in unique.values():
            by_user.setdefault(c.user_id, []).append(c)
        return {u: [c.item_id for c in sorted(cs, key=lambda c: c.ts)][-max_len:] for u, cs in by_user.items()}

    def merge(self, other: ProducedLog) -> ProducedLog:
        return ProducedLog(self.clicks + other.clicks, self.bad + other.bad, self.errors + other.errors)

    @property
    def unique(self) -> int:
        return len({c.event_id for c in self.clicks})


class PacedProducer(threading.Thread):
    """Sends `clicks` (and `bad` raw records, spread among them) at `rate` per second in a thread; only records
    the broker acknowledged go into `log`. A broker that stalls delays acknowledgements, it does not lose them."""

    def __init__(self, bootstrap: str, clicks: list[Click], rate: float, bad: list[tuple[bytes, bytes]] = (),
                 topic: str = topology.CLICKS.name) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.clicks, self.rate, self.topic = bootstrap, clicks, rate, topic
        self.bad = list(bad)
        self.log = ProducedLog()
        self.sent = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def _ack(self, item: Click | bytes) -> Callable:
        def ok(_meta: object) -> None:
            with self._lock:
                (self.log.bad if isinstance(item, bytes) else self.log.clicks).append(item)

        return ok

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self.log.errors.append(exc)

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, retries=20,
                                 request_timeout_ms=60000, delivery_timeout_ms=180000, max_block_ms=120000)
        try:
            start = time.monotonic()
            spacing = max(1, len(self.clicks) // (len(self.bad) + 1)) if self.bad else 0
            for n, c in enumerate(self.clicks):
                if self._halt.is_set():
                    break
                if self.rate > 0:
                    delay = start + n / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                key, value = c.record()
                producer.send(self.topic, key=key, value=value).add_callback(self._ack(c)).add_errback(self._fail)
                if self.bad and spacing and n % spacing == spacing // 2:
                    key, raw = self.bad.pop(0)
                    producer.send(self.topic, key=key, value=raw).add_callback(self._ack(raw)).add_errback(
                        self._fail)
                self.sent = n + 1
            producer.flush()
        finally:
            producer.close()

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:  # started
            self.join(200)


def warm_up(bootstrap: str, changelog: TopicReader, workers: list[Worker], users: int, item: str,
            ready: Callable[[], bool] | None = None, timeout_s: float = 240) -> ProducedLog:
    """Send one click for each of `users` warm-up users and wait until the workers have applied them (and `ready()`):
    a Faust worker's first rebalance takes tens of seconds on this broker, and a fault injected "mid-stream" must
    hit a worker that is processing. Returns what was produced (part of the ground truth)."""
    clicks = [Click(f"warmup{u}-0", f"warmup{u}", item, time.time() - 200_000) for u in range(users)]
    producer = PacedProducer(bootstrap, clicks, rate=0)
    producer.start()
    producer.join(120)
    assert not producer.log.errors and len(producer.log.clicks) == users, producer.log.errors[:3]
    keys = {c.user_id for c in clicks}

    def applied() -> bool:
        return keys <= {decode_key(r.key) for r in changelog.poll()} and (ready is None or ready())

    assert wait_until(applied, timeout_s, workers), "workers did not apply the warm-up clicks"
    return producer.log


class TopicReader:
    """Reads a whole topic (all partitions, from the start, no consumer group) incrementally."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list = []
        # earliest: should a fetch position ever be out of range (the broker misreports end offsets, see
        # test_reliability), the reader starts over rather than jumping to the end and missing records
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      fetch_max_wait_ms=100, auto_offset_reset="earliest")
        self._assigned = False

    def poll(self, timeout_ms: int = 200) -> list:
        if not self._assigned:
            found = self.consumer.partitions_for_topic(self.topic)
            if not found:
                self.consumer.topics()  # refresh metadata
                time.sleep(0.2)
                return self.records
            parts = [TopicPartition(self.topic, p) for p in sorted(found)]
            self.consumer.assign(parts)
            self.consumer.seek_to_beginning(*parts)
            self._assigned = True
        for batch in self.consumer.poll(timeout_ms=timeout_ms).values():
            self.records.extend(batch)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def read_topic(bootstrap: str, topic: str, done: Callable[[list], bool], timeout_s: float,
               worker: Worker | None = None) -> list:
    """Every record of `topic` (all partitions, from the start) once `done(records)` holds. Fails when the
    timeout passes first (never partial data), and at once if `worker` exits (its log is then the error)."""
    reader = TopicReader(bootstrap, topic)
    try:
        if not wait_until(lambda: done(reader.poll()), timeout_s, [worker] if worker is not None else [], poll_s=0):
            tail = f"; log of {worker.name}:\n{worker.log_path.read_text()[-3000:]}" if worker is not None else ""
            raise AssertionError(f"{topic}: not done after {timeout_s:.0f} s, {len(reader.records)} records{tail}")
        return reader.records
    finally:
        reader.close()


def decode_key(key: bytes) -> str:
    text = key.decode()
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        if isinstance(value, str):
            return value
    return text


def table_state(changelog_records: list) -> dict[str, dict]:
    """user -> latest behaviors state, replayed from the changelog as a restoring worker does (a None value is
    a deletion)."""
    state: dict[str, dict] = {}
    for r in changelog_records:
        user = decode_key(r.key)
        if r.value is None:
            state.pop(user, None)
        else:
            state[user] = json.loads(r.value)
    return state


def sequences(state: dict[str, dict]) -> dict[str, list[str]]:
    return {u: [item for _, item in s.get("seq", ())] for u, s in state.items()}


def wait_until(predicate: Callable[[], bool], timeout_s: float, workers: list[Worker] = (),
               poll_s: float = 0.5) -> bool:
    """Poll `predicate` until true or `timeout_s` (a failure bound, never the thing measured); fails at once if a
    worker that should be running exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            w.check_alive()
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample of Prometheus text exposition (0 when absent)."""
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0
