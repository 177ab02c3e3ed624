"""Kafka security (SASL/SSL) for every Kafka client mindstream creates, from KAFKA_* environment variables.

One place reads and checks the settings; three functions turn them into the keyword arguments of the three
client libraries in use, whose names differ:

* kafka-python (the CLI tools: produce, refresh, retrain, rollback, candidates, demo): `kafka_python_kwargs()`;
* aiokafka (the worker's model-releases follower, stream/worker/hotswap.py): `aiokafka_kwargs()`;
* Faust (the worker's agents, tables and topic creation): `faust_kwargs()`, for `faust.App(...)`.

The default, PLAINTEXT, adds no keyword at all, so a client is built exactly as without this module. Settings
come from the environment only, not from flags: a password on a command line is visible to every user of the
machine (`ps`). Secrets never appear in repr/str (KafkaSecurity masks them). README.md, "Kafka security
(SASL/SSL)", documents the variables.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PLAINTEXT = "PLAINTEXT"
PROTOCOLS = (PLAINTEXT, "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# what kafka-python, aiokafka and Faust all support with a username and password; GSSAPI (Kerberos) and
# OAUTHBEARER need more than a password and are not wired here
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

ENV_NAMES: dict[str, str] = {
    "protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password": "KAFKA_SASL_PASSWORD",
    "ssl_cafile": "KAFKA_SSL_CAFILE",
    "ssl_certfile": "KAFKA_SSL_CERTFILE",
    "ssl_keyfile": "KAFKA_SSL_KEYFILE",
    "ssl_key_password": "KAFKA_SSL_KEY_PASSWORD",
    "ssl_check_hostname": "KAFKA_SSL_CHECK_HOSTNAME",
}
SECRETS = ("sasl_password", "ssl_key_password")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class KafkaSecurityError(ValueError):
    """The KAFKA_* security settings are inconsistent; the message names the variable to fix."""


@dataclass(frozen=True, repr=False)
class KafkaSecurity:
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (Kafka's security.protocol)
    protocol: str = PLAINTEXT
    # with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    # with SSL / SASL_SSL: CA bundle that signed the brokers' certificates (empty: the system's CAs)
    ssl_cafile: str = ""
    # client certificate and key, for brokers that require mutual TLS (empty: none)
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_key_password: str = ""
    # off only for brokers whose certificate does not name the host they are reached by
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        # normalized here so `KafkaSecurity(protocol="sasl_ssl")` and the environment behave alike
        object.__setattr__(self, "protocol", self.protocol.strip().upper())
        object.__setattr__(self, "sasl_mechanism", self.sasl_mechanism.strip().upper())
        self._validate()

    def _validate(self) -> None:
        env = ENV_NAMES
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"{env['protocol']}={self.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if self.sasl_mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"{env['sasl_mechanism']}={self.sasl_mechanism!r}: expected one of "
                                     f"{', '.join(MECHANISMS)}")
        if self.uses_sasl:
            for name in ("sasl_username", "sasl_password"):
                if not getattr(self, name):
                    raise KafkaSecurityError(f"{env['protocol']}={self.protocol} needs {env[name]}")
        else:
            # credentials that would be silently ignored are a misconfiguration: say so instead of connecting
            # without authentication
            for name in ("sasl_username", "sasl_password"):
                if getattr(self, name):
                    raise KafkaSecurityError(f"{env[name]} is set but {env['protocol']}={self.protocol} does not "
                                             f"use SASL (SASL_PLAINTEXT or SASL_SSL does)")
        ssl_files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")
        if not self.uses_ssl:
            for name in ssl_files:
                if getattr(self, name):
                    raise KafkaSecurityError(f"{env[name]} is set but {env['protocol']}={self.protocol} does not "
                                             f"use TLS (SSL or SASL_SSL does)")
        for name in ("ssl_keyfile", "ssl_key_password"):
            if getattr(self, name) and not self.ssl_certfile:
                raise KafkaSecurityError(f"{env[name]} is set without {env['ssl_certfile']}")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise KafkaSecurityError(f"{env[name]}={path}: no such file")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """Settings from the KAFKA_* variables (unset or empty: the defaults above); KafkaSecurityError if
        they do not fit together."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_NAMES[f.name], "")
            if raw == "":
                continue
            if f.type in (bool, "bool"):
                word = raw.strip().lower()
                if word not in _TRUE + _FALSE:
                    raise KafkaSecurityError(f"{ENV_NAMES[f.name]}={raw!r}: expected true or false")
                values[f.name] = word in _TRUE
            else:
                values[f.name] = raw
        return cls(**values)

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown.append(f"{f.name}={'***' if f.name in SECRETS and value else value!r}")
        return f"KafkaSecurity({', '.join(shown)})"

    __str__ = __repr__

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of aiokafka and Faust clients (kafka-python builds its own from the file names)."""
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(cafile=self.ssl_cafile or None, certfile=self.ssl_certfile or None,
                                     keyfile=self.ssl_keyfile or None, password=self.ssl_key_password or None)
        context.check_hostname = self.ssl_check_hostname
        return context

    def _protocol_and_sasl(self) -> dict[str, Any]:
        """The keywords both kafka-python and aiokafka spell alike."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        return kwargs

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of kafka-python's KafkaConsumer, KafkaProducer and KafkaAdminClient."""
        if self.protocol == PLAINTEXT:
            return {}
        kwargs = self._protocol_and_sasl()
        if self.uses_ssl:
            kwargs["ssl_check_hostname"] = self.ssl_check_hostname
            for name, kwarg in (("ssl_cafile", "ssl_cafile"), ("ssl_certfile", "ssl_certfile"),
                                ("ssl_keyfile", "ssl_keyfile"), ("ssl_key_password", "ssl_password")):
                if getattr(self, name):
                    kwargs[kwarg] = getattr(self, name)
        return kwargs

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's AIOKafkaConsumer / AIOKafkaProducer (TLS as an SSLContext)."""
        if self.protocol == PLAINTEXT:
            return {}
        kwargs = self._protocol_and_sasl()
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def faust_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `faust.App(...)`: `broker_credentials`, which Faust hands to its consumer,
        producer and topic-creating client (faust/transport/drivers/aiokafka.py, credentials_to_aiokafka_auth)."""
        if self.protocol == PLAINTEXT:
            return {}
        import faust

        context = self.ssl_context() if self.uses_ssl else None
        if not self.uses_sasl:
            return {"broker_credentials": faust.SSLCredentials(context)}
        # Faust picks SASL_SSL over SASL_PLAINTEXT by the presence of ssl_context
        return {"broker_credentials": faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                                            mechanism=self.sasl_mechanism, ssl_context=context)}


def kafka_python_kwargs() -> dict[str, Any]:
    """Security keyword arguments of a kafka-python client, from the environment ({} for PLAINTEXT)."""
    return KafkaSecurity.from_env().kafka_python_kwargs()


def aiokafka_kwargs() -> dict[str, Any]:
    """Security keyword arguments of an aiokafka client, from the environment ({} for PLAINTEXT)."""
    return KafkaSecurity.from_env().aiokafka_kwargs()


def faust_kwargs() -> dict[str, Any]:
    """Security keyword arguments of `faust.App(...)`, from the environment ({} for PLAINTEXT)."""
    return KafkaSecurity.from_env().faust_kwargs()
