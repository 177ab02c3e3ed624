"""Announcing a release on `model-releases` (value: stream/messages.py `Announcement`), as `retrain` and
`rollback` do; the workers' hot-swap task (stream/worker/hotswap.py) reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from model.release import ReleaseError
from stream.kafka_security import kafka_python_kwargs
from stream.messages import Announcement

KEY = b"current"


def announcement_for(release_dir: str | Path) -> Announcement:
    """The announcement of a release directory, from its manifest (not verified here: load_release does that)."""
    path = Path(release_dir).resolve()
    try:
        raw = (path / "manifest.json").read_bytes()
        manifest = json.loads(raw)
    except OSError as e:
        raise ReleaseError(f"{path / 'manifest.json'}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{path / 'manifest.json'}: not valid JSON ({e})") from None
    return Announcement(
        version=str(manifest["version"]),
        uri=str(path),
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        created_ts=float(manifest.get("created_ts", 0.0)),
    )


def publish(bootstrap: str, topic: str, announcement: Announcement, timeout_s: float = 30.0) -> None:
    """Send the announcement (key `current`) and wait until the broker has it. acks=all: a release the
    workers never hear of is a silent failure of the daily job."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5, **kafka_python_kwargs())
    try:
        producer.send(topic, key=KEY, value=announcement.to_json()).get(timeout=timeout_s)
        producer.flush(timeout=timeout_s)
    finally:
        producer.close()


def releases_by_age(models_dir: str | Path) -> list[tuple[float, str]]:
    """(created_ts, version) of every release directory under models_dir, oldest first (unverified)."""
    out = []
    for manifest in Path(models_dir).glob("*/manifest.json"):
        if manifest.parent.name.startswith("."):
            continue  # a release being written (model/release.py renames it into place when complete)
        try:
            obj = json.loads(manifest.read_bytes())
            out.append((float(obj["created_ts"]), str(obj["version"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: never a rollback target
    return sorted(out)
