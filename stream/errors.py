"""Expected failures of a `mindstream` command, and the one line each becomes.

`stream.cli.main` catches what `expected_message` recognises, prints `mindstream <command>: <message>` on
stderr and exits 2; anything else is a bug and keeps its traceback. `--debug` (or MINDSTREAM_DEBUG=1) shows
the traceback of an expected failure too.

Recognised: `CommandError` (a command's own check: a bad flag value, a missing input), the data and
release errors of model/ (`file:line: ...` messages), the Kafka client settings, a file that cannot be
opened, a wait that timed out and a broker that cannot be reached (named with the address tried and KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import argparse


class CommandError(Exception):
    """A failure the user can fix; the message says what is wrong and what to do."""


def broker_unreachable(exc: BaseException) -> bool:
    """kafka-python or aiokafka could not reach any bootstrap server."""
    from kafka import errors as kafka_errors

    if isinstance(exc, kafka_errors.KafkaTimeoutError):
        return "bootstrap" in str(exc).lower()
    if isinstance(exc, kafka_errors.KafkaConnectionError):
        return True
    no_brokers = getattr(kafka_errors, "NoBrokersAvailable", None)  # kafka-python 2.x
    if no_brokers is not None and isinstance(exc, no_brokers):
        return True
    try:
        from aiokafka import errors as aiokafka_errors
    except ImportError:
        return False
    return isinstance(exc, aiokafka_errors.KafkaConnectionError)


def _bootstrap(args: argparse.Namespace) -> str:
    bootstrap = getattr(args, "bootstrap", None)
    if bootstrap:
        return str(bootstrap)
    from stream.config import Settings

    return Settings.from_env().bootstrap


def expected_message(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message for an expected failure of the command `args` ran; None for anything else."""
    from model.data import DataError
    from model.release import ReleaseError
    from stream.kafka_security import KafkaSecurityError

    if isinstance(exc, CommandError | DataError | KafkaSecurityError):
        return str(exc)
    if isinstance(exc, ReleaseError):
        return f"{exc} (train one with `mindstream train --data PATH --out DIR`)" \
            if "CURRENT" in str(exc) else str(exc)
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError) \
            and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror.lower() if exc.strerror else exc}"
    if isinstance(exc, TimeoutError) and str(exc):  # a broker that answers too slowly (stream/topic_reader.py)
        return str(exc)
    if broker_unreachable(exc):
        return (f"cannot reach a Kafka broker at {_bootstrap(args)} (--bootstrap or KAFKA_BOOTSTRAP): start one "
                f"(`mindstream broker` runs the embedded broker on loopback) or point KAFKA_BOOTSTRAP at yours")
    return None
