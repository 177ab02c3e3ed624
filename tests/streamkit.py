"""What the integration tests add to the harness (infra/processes.py, infra/click_load.py, infra/measure.py,
stream/topic_reader.py): an embedded broker with the pipeline's topics, `mindstream worker` with the tests'
defaults, and a whole-topic read that fails with the worker's log when it does not complete in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from infra.broker import EmbeddedBroker
from infra.processes import WorkerProcess, wait_until
from stream import topology
from stream.topic_reader import TopicLog

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
    """`mindstream worker` serving `release` (None: the CURRENT of `models_dir`, which defaults to the release's
    parent) with the tests' defaults: `partitions`, `top_n`, log level TEST_WORKER_LOG_LEVEL (default warning),
    a minute for a clean stop."""

    def __init__(self, bootstrap: str, release: Path | None, state_dir: Path, log: Path, partitions: int,
                 top_n: int = 20, extra: tuple[str, ...] = (), models_dir: Path | None = None) -> None:
        args = (*(("--release", str(release)) if release is not None else ()), "--partitions", str(partitions),
                "--top-n", str(top_n), "--log-level", os.environ.get("TEST_WORKER_LOG_LEVEL", "warning"), *extra)
        super().__init__(log.stem, log, bootstrap, state_dir, models_dir=models_dir or release.parent, args=args)

    def stop(self, timeout_s: float = 60.0) -> int:
        return super().stop(timeout_s)


def read_topic(bootstrap: str, topic: str, done: Callable[[list], bool], timeout_s: float,
               worker: Worker | None = None) -> list:
    """Every record of `topic` (all partitions, from the start) once `done(records)` holds. Fails when the
    timeout passes first (never partial data), and at once if `worker` exits (its log is then the error)."""
    log = TopicLog(bootstrap, topic)
    try:
        if not wait_until(lambda: done(log.poll()), timeout_s, [worker] if worker is not None else [], poll_s=0):
            tail = f"; log of {worker.name}:\n{worker.log_path.read_text()[-3000:]}" if worker is not None else ""
            raise AssertionError(f"{topic}: not done after {timeout_s:.0f} s, {len(log.records)} records{tail}")
        return log.records
    finally:
        log.close()
