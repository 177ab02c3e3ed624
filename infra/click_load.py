"""A click load with its ground truth, for the tests and the soak benchmark that drive the real pipeline: click
streams, a paced producer that records what the broker acknowledged, the behavior sequences that log implies,
and the same sequences replayed from the behaviors table's changelog, to compare the two.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer

from infra.processes import WorkerProcess, wait_until


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

    def __init__(self, bootstrap: str, topic: str, clicks: list[Click], rate: float,
                 bad: list[tuple[bytes, bytes]] = ()) -> None:
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


def warm_up(bootstrap: str, topic: str, changelog: Any, workers: list[WorkerProcess], users: int, item: str,
            ready: Callable[[], bool] | None = None, timeout_s: float = 240) -> ProducedLog:
    """Send one click for each of `users` warm-up users and wait until the workers have applied them (and `ready()`):
    a Faust worker's first rebalance takes tens of seconds on this broker, and a fault injected "mid-stream" must
    hit a worker that is processing. They go to `topic` (the clicks topic); `changelog` is the behaviors changelog's
    stream.topic_reader.TopicLog (both passed in: infra/ does not import stream/). Returns what was produced (part
    of the ground truth)."""
    clicks = [Click(f"warmup{u}-0", f"warmup{u}", item, time.time() - 200_000) for u in range(users)]
    producer = PacedProducer(bootstrap, topic, clicks, rate=0)
    producer.start()
    producer.join(120)
    assert not producer.log.errors and len(producer.log.clicks) == users, producer.log.errors[:3]
    keys = {c.user_id for c in clicks}

    def applied() -> bool:
        return keys <= {decode_key(r.key) for r in changelog.poll()} and (ready is None or ready())

    assert wait_until(applied, timeout_s, workers), "workers did not apply the warm-up clicks"
    return producer.log


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
