"""Kafka SASL/SSL settings (stream/kafka_security.py): read from the environment, checked, and handed to every
Kafka client the product code builds. The embedded Tansu broker speaks neither SASL nor TLS, so nothing here
connects: each client class is replaced by a recorder and the keyword arguments it was built with are checked."""

from __future__ import annotations

import ast
import asyncio
import ssl
from pathlib import Path
from typing import Any

import faust
import kafka
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream import kafka_security, topology
from stream.config import Settings
from stream.kafka_security import ENV_NAMES, KafkaSecurity, KafkaSecurityError

STREAM = Path(__file__).resolve().parent.parent / "stream"
BOGUS = "127.0.0.1:1"  # nothing listens there; the recorders never connect anyway
PASSWORD = "s3cret-pa55word"

# a throwaway self-signed CA certificate (no key): enough for an SSLContext to load as its CA bundle
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBkDCCATegAwIBAgIUaOsZIKq7yhE0Rex4TQQ6ojleCFcwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSbWluZHN0cmVhbS10ZXN0LWNhMCAXDTI2MTEyMzExMDk1NloY
DzIxMjYxMDMwMTEwOTU2WjAdMRswGQYDVQQDDBJtaW5kc3RyZWFtLXRlc3QtY2Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARpFyYiMYJtGqDmNdBehp+iOQIRi69t
1XK74UCWcpZP720ES+CS2bF0WoO76K1GSNf8WSpjE8PWZOjV6ApqncS/o1MwUTAd
BgNVHQ4EFgQU0Am3lsZiXc5zLpxdoz/tNJFrnCMwHwYDVR0jBBgwFoAU0Am3lsZi
Xc5zLpxdoz/tNJFrnCMwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBE
AiEAl9vV0HSGB78Y1YG016hFTBfKs/ZEpNj8i7P50HwqG3gCH1no+cjzvUGOGC2G
3/Vwpj69JsqK9mpxPKFVLYinoek=
-----END CERTIFICATE-----
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cafile(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text(TEST_CA)
    return str(path)


@pytest.fixture
def sasl_ssl(monkeypatch: pytest.MonkeyPatch, cafile: str) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "mindstream")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("KAFKA_SSL_CAFILE", cafile)


EXPECTED_KAFKA_PYTHON = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                         "sasl_plain_username": "mindstream", "sasl_plain_password": PASSWORD,
                         "ssl_check_hostname": True}


def _has_security(kwargs: dict[str, Any], cafile: str) -> bool:
    return all(kwargs.get(k) == v for k, v in {**EXPECTED_KAFKA_PYTHON, "ssl_cafile": cafile}.items())


# --------------------------------------------------------------------------- parsing and validation


def test_default_is_plaintext_and_adds_no_keyword() -> None:
    security = KafkaSecurity.from_env({})
    assert security.protocol == "PLAINTEXT"
    assert security.kafka_python_kwargs() == {} and security.aiokafka_kwargs() == {}
    assert security.faust_kwargs() == {}


def test_environment_is_read_and_normalized(cafile: str) -> None:
    security = KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "scram-sha-256",
                                       "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
                                       "KAFKA_SSL_CAFILE": cafile, "KAFKA_SSL_CHECK_HOSTNAME": "false"})
    assert (security.protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert security.kafka_python_kwargs() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "u",
        "sasl_plain_password": "p", "ssl_check_hostname": False, "ssl_cafile": cafile}
    kwargs = security.aiokafka_kwargs()
    context = kwargs.pop("ssl_context")
    assert kwargs == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                      "sasl_plain_username": "u", "sasl_plain_password": "p"}
    assert isinstance(context, ssl.SSLContext) and not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] == 1  # the CA file was loaded


def test_ssl_only_with_client_certificate_names(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("x")
    key.write_text("x")
    security = KafkaSecurity(protocol="SSL", ssl_certfile=str(cert), ssl_keyfile=str(key), ssl_key_password="kp")
    assert security.kafka_python_kwargs() == {"security_protocol": "SSL", "ssl_check_hostname": True,
                                              "ssl_certfile": str(cert), "ssl_keyfile": str(key),
                                              "ssl_password": "kp"}


@pytest.mark.parametrize("env, message", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS': expected one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM='GSSAPI': expected one of PLAIN"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_PASSWORD": "p"}, "needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, "needs KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
     "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
      "KAFKA_SSL_CAFILE": "/etc/hostname"}, "KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": "/etc/hostname"},
     "KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
     "KAFKA_SSL_CAFILE=/no/such/ca.pem: no such file"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CHECK_HOSTNAME": "maybe"},
     "KAFKA_SSL_CHECK_HOSTNAME='maybe': expected true or false"),
])
def test_inconsistent_settings_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaSecurityError, match=message.replace("(", r"\(")):
        KafkaSecurity.from_env(env)


def test_secrets_never_appear_in_repr_or_str(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    security = KafkaSecurity(protocol="SASL_SSL", sasl_username="mindstream", sasl_password=PASSWORD,
                             ssl_certfile=str(cert), ssl_key_password="key-" + PASSWORD)
    for text in (repr(security), str(security), f"{security}", repr([security])):
        assert PASSWORD not in text and "mindstream" in text and "***" in text
    # what Faust logs of its credentials shows the username only
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "mindstream")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    assert PASSWORD not in repr(kafka_security.faust_kwargs()["broker_credentials"])
    # nor in the error of a bad setting
    with pytest.raises(KafkaSecurityError) as err:
        KafkaSecurity(protocol="PLAINTEXT", sasl_password=PASSWORD)
    assert PASSWORD not in str(err.value)


# --------------------------------------------------------------------------- Faust


def _app(tmp_path: Path) -> faust.App:
    from stream.worker.app import create_app

    return create_app(Settings(bootstrap=BOGUS, state_dir=str(tmp_path / "state")))


def test_faust_app_gets_sasl_ssl_credentials(sasl_ssl: None, tmp_path: Path) -> None:
    creds = _app(tmp_path).conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value, creds.username, creds.password) == (
        "SASL_SSL", "SCRAM-SHA-512", "mindstream", PASSWORD)
    assert creds.ssl_context.cert_store_stats()["x509_ca"] == 1
    # what Faust's aiokafka driver then passes to its consumer, producer and topic-creating client
    auth = credentials_to_aiokafka_auth(creds, None)
    assert {k: auth[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                 "sasl_plain_password")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "mindstream",
        "sasl_plain_password": PASSWORD}
    assert auth["ssl_context"] is creds.ssl_context


@pytest.mark.parametrize("env, protocol", [
    ({"KAFKA_SECURITY_PROTOCOL": "SSL"}, "SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
     "SASL_PLAINTEXT"),
])
def test_faust_app_gets_ssl_or_sasl_plaintext(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              env: dict[str, str], protocol: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    auth = credentials_to_aiokafka_auth(_app(tmp_path).conf.broker_credentials, None)
    assert auth["security_protocol"] == protocol
    assert (auth["ssl_context"] is not None) == (protocol == "SSL")


def test_faust_app_plaintext_has_no_credentials(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert app.conf.broker_credentials is None and app.conf.ssl_context is None


# --------------------------------------------------------------------------- every client in stream/


class Recorder:
    """Stands in for a Kafka client class: records the keyword arguments, then behaves as an empty cluster."""

    def __init__(self, calls: list[tuple[str, dict]], name: str) -> None:
        self.calls, self.name = calls, name

    def __call__(self, *args: Any, **kwargs: Any) -> Recorder:
        self.calls.append((self.name, kwargs))
        return self

    # consumers
    def partitions_for_topic(self, topic: str) -> None:
        return None

    def topics(self) -> set[str]:
        return set()

    # admin client
    def list_topics(self) -> list[str]:
        return []

    def create_topics(self, new_topics: list) -> None:
        pass

    # producer (send returns itself as the future)
    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> Recorder:
        return self

    def add_errback(self, fn: Any) -> Recorder:
        return self

    def get(self, timeout: float | None = None) -> None:
        return None

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """kafka-python's client classes replaced by recorders (every site imports them from `kafka` when called)."""
    calls: list[tuple[str, dict]] = []
    for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka, name, Recorder(calls, name))
    return calls


def _run_produce() -> None:
    from stream.commands.produce import produce

    produce(iter([{"user_id": "u1", "item_id": "i1"}]), BOGUS, topology.CLICKS.name, progress=False, partitions=1)


def _run_refresh() -> None:
    from stream.commands.refresh import clicks_partitions, read_users, request_refresh

    assert read_users(BOGUS, [topology.BEHAVIORS.changelog("x")]) == []  # stream/topic_reader.py
    clicks_partitions(BOGUS, Settings(bootstrap=BOGUS))
    request_refresh(["u1"], BOGUS, topology.REFRESH_REQUESTS.name, rate=0.0, progress=False)


def _run_retrain() -> None:
    from stream.commands.retrain import read_clicks

    read_clicks(BOGUS, topology.CLICKS.name, since_ts=None)


def _run_announce() -> None:
    from stream.commands.announce import publish
    from stream.messages import Announcement

    publish(BOGUS, topology.MODEL_RELEASES.name, Announcement("v1", "/models/v1", "0" * 64, 0.0))


def _run_candidates() -> None:
    from stream.commands.candidates import read_candidates

    assert list(read_candidates(BOGUS, topology.CANDIDATES.name, wait_s=0.0)) == []


def _run_demo_collector() -> None:
    from stream.commands.demo import CandidateCollector

    collector = CandidateCollector(BOGUS, topology.CANDIDATES.name)
    collector._stop.set()  # build the consumer, then leave the loop at once
    collector._run()
    assert collector.error is None


@pytest.mark.parametrize("run, clients", [
    (_run_produce, ["KafkaAdminClient", "KafkaProducer"]),
    (_run_refresh, ["KafkaConsumer", "KafkaConsumer", "KafkaProducer"]),
    (_run_retrain, ["KafkaConsumer"]),
    (_run_announce, ["KafkaProducer"]),
    (_run_candidates, ["KafkaConsumer"]),
    (_run_demo_collector, ["KafkaConsumer"]),
], ids=["produce", "refresh", "retrain", "announce(rollback)", "read_candidates", "demo"])
def test_every_kafka_python_client_gets_the_settings(sasl_ssl: None, cafile: str, recorded: list,
                                                     run: Any, clients: list[str]) -> None:
    run()
    assert [name for name, _ in recorded] == clients
    for name, kwargs in recorded:
        assert _has_security(kwargs, cafile), f"{name} built without the security settings: {sorted(kwargs)}"


def test_plaintext_clients_are_built_as_before(recorded: list) -> None:
    _run_produce()
    _run_refresh()
    # every client the two commands build was recorded (an empty record would pass the loop below)
    assert [name for name, _ in recorded] == ["KafkaAdminClient", "KafkaProducer", "KafkaConsumer", "KafkaConsumer",
                                              "KafkaProducer"]
    for name, kwargs in recorded:
        assert not any(k.startswith(("security_", "sasl_", "ssl_")) for k in kwargs), (name, kwargs)


def test_release_follower_aiokafka_consumer_gets_the_settings(sasl_ssl: None, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    import aiokafka
    from faust.topics import Topic

    from stream.worker import hotswap

    class Built(Exception):
        pass

    seen: list[dict] = []

    def consumer(*args: Any, **kwargs: Any) -> None:
        seen.append(kwargs)
        raise Built  # ends the task before it would connect

    async def declared(self: Topic) -> None:
        pass

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", consumer)
    monkeypatch.setattr(Topic, "maybe_declare", declared)
    app = _app(tmp_path)
    hotswap.install(app, Settings(bootstrap=BOGUS), registry=None)
    with pytest.raises(Built):
        asyncio.run(app._app_tasks[-1]())
    (kwargs,) = seen
    assert {k: kwargs[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                   "sasl_plain_password")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "mindstream",
        "sasl_plain_password": PASSWORD}
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


CLIENTS = {"KafkaConsumer": "kafka_python_kwargs", "KafkaProducer": "kafka_python_kwargs",
           "KafkaAdminClient": "kafka_python_kwargs", "AIOKafkaConsumer": "aiokafka_kwargs",
           "AIOKafkaProducer": "aiokafka_kwargs", "AIOKafkaAdminClient": "aiokafka_kwargs", "App": "faust_kwargs"}


def test_no_client_in_stream_is_built_without_the_settings() -> None:
    """Guards sites added later: every client construction in stream/ spreads the matching `**..._kwargs()`
    (infra/ imports nothing of stream/: its one client, the broker's readiness probe, takes them from the caller,
    tests/test_layout.py)."""
    found = 0
    for path in sorted(STREAM.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name not in CLIENTS:
                continue
            found += 1
            spread = [k.value.func.id for k in node.keywords
                      if k.arg is None and isinstance(k.value, ast.Call) and isinstance(k.value.func, ast.Name)]
            assert CLIENTS[name] in spread, f"{path.name}:{node.lineno}: {name}(...) without **{CLIENTS[name]}()"
    assert found >= 8  # the sites of this module's tests (one topic reader, ...); fewer: the scan went wrong


def test_a_bad_setting_is_a_one_line_error_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    from stream.cli import main

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("KAFKA_SASL_USERNAME", raising=False)
    assert main(["candidates", "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mindstream candidates: ") and "KAFKA_SASL_USERNAME" in err and "Traceback" not in err
