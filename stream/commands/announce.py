"""The `model-releases` topic: the announcement of a release, as written by `retrain`/`rollback` and read by
the workers' hot-swap task (stream/worker/hotswap.py).

    key `current`, value {"version", "uri", "manifest_sha256", "created_ts"}   (ARCHITECTURE.md)

The announcement names the release directory and the sha256 of its manifest.json; the manifest in turn holds
the sha256 of every other file, so a worker that checks both serves exactly the bytes the trainer verified.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from model.release import ReleaseError
from stream.kafka_security import kafka_python_kwargs

KEY = b"current"


class AnnouncementError(ReleaseError):
    """A model-releases record that is not a usable announcement."""


@dataclass(frozen=True)
class Announcement:
    version: str
    uri: str
    manifest_sha256: str
    created_ts: float

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def parse(cls, raw: bytes | None) -> Announcement:
        """Judge one record value; raises AnnouncementError saying what is wrong."""
        try:
            obj = json.loads(raw or b"")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AnnouncementError(f"not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise AnnouncementError("not a JSON object")
        for name in ("version", "uri", "manifest_sha256"):
            if not isinstance(obj.get(name), str) or not obj[name]:
                raise AnnouncementError(f"{name} missing or not a non-empty string")
        version = obj["version"]
        # the version names a directory under the models dir: no path tricks
        if "/" in version or "\\" in version or version.startswith("."):
            raise AnnouncementError(f"invalid version {version!r}")
        created = obj.get("created_ts")
        if isinstance(created, bool) or not isinstance(created, int | float) or not math.isfinite(created):
            raise AnnouncementError("created_ts missing or not a finite number")
        return cls(version, obj["uri"], obj["manifest_sha256"], float(created))

    def release_dir(self, models_dir: str | Path | None) -> Path:
        """Where to load the release from: `uri` when it is a directory here; otherwise models_dir/<version>
        (the trainer and the worker may mount the same shared volume at different paths)."""
        uri = self.uri.removeprefix("file://")
        if Path(uri).is_dir() or models_dir is None:
            return Path(uri)
        return Path(models_dir) / self.version


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
        producer.send(topic, key=KEY, value=announcement.to_bytes()).get(timeout=timeout_s)
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
