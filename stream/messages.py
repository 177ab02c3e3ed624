"""The values of the topics (stream/topology.py), one dataclass each, as they are on the wire
(docs/schemas/*.schema.json): `to_json` gives the record value's bytes, `from_json` judges one record value and
raises `MessageError` saying what is wrong, so a consumer checks a value once, here, and then trusts its fields.

Dataclasses, not `faust.Record`: every agent and reader takes its topic as raw bytes and decodes it itself, so a
bad value is a dead letter or a counted skip chosen by the consumer, never an exception inside Faust's codec;
and the readers outside the worker (commands, tests, benchmarks) use these types without a Faust app. Clicks are
the exception to "one dataclass per topic here": they stay raw bytes judged by stream/events.py, whose
`InvalidEvent` carries the dead-letter reason.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from stream.events import MAX_ID_CHARS


class MessageError(ValueError):
    """A record value that is not a valid message of its topic."""


def _object(raw: bytes | None) -> dict[str, Any]:
    try:
        obj = json.loads(raw or b"")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise MessageError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise MessageError("not a JSON object")
    return obj


def _text(obj: dict[str, Any], name: str, max_chars: int | None = None) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value or (max_chars is not None and len(value) > max_chars):
        limit = f"1..{max_chars} characters" if max_chars is not None else "non-empty"
        raise MessageError(f"{name} missing or not a string of {limit}")
    return value


def _number(obj: dict[str, Any], name: str, optional: bool = False) -> float | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    try:  # bool is an int subclass in Python, but `true` is not a number; float() overflows on a huge integer
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise MessageError(f"{name} missing or not a finite number >= 0")
    return number


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode("utf-8")


# ------------------------------------------------------------------------------------------ user-interests


@dataclass
class UserInterests:
    """A user's K'u interest vectors, computed by release `model_version` from the sequence `history` (item ids,
    oldest first: recall drops them). Key: user id."""

    user_id: str
    model_version: str
    interests: np.ndarray  # [K'u, d] float32
    seq_len: int
    event_ts: float  # the newest click the interests come from
    computed_ts: float
    history: list[str] = field(default_factory=list)
    refresh: bool = False  # recomputed by `mindstream refresh`, not by a click

    def to_json(self) -> bytes:
        value = {"user_id": self.user_id, "model_version": self.model_version,
                 "interests": self.interests.astype(float).tolist(), "seq_len": self.seq_len,
                 "event_ts": self.event_ts, "computed_ts": self.computed_ts, "history": self.history}
        if self.refresh:
            value["refresh"] = True
        return _dumps(value)

    @classmethod
    def from_json(cls, raw: bytes | None) -> UserInterests:
        obj = _object(raw)
        try:
            vectors = np.asarray(obj.get("interests"), dtype=np.float32)
        except (TypeError, ValueError, OverflowError) as e:
            raise MessageError(f"interests: {e}") from None
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0 or not np.isfinite(vectors).all():
            raise MessageError(f"interests must be a non-empty K' x d matrix of finite numbers, got {vectors.shape}")
        seq_len = obj.get("seq_len")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise MessageError("seq_len missing or not an integer >= 1")
        history = obj.get("history", [])
        if not isinstance(history, list) or not all(isinstance(i, str) for i in history):
            raise MessageError("history must be a list of item ids")
        return cls(_text(obj, "user_id", MAX_ID_CHARS), _text(obj, "model_version"), vectors, seq_len,
                   _number(obj, "event_ts"), _number(obj, "computed_ts"), history, obj.get("refresh") is True)


# ------------------------------------------------------------------------------------------ candidates


class Candidate(TypedDict):
    """One item of a candidate list: a plain dict (recall builds up to top_n of them per click)."""

    item_id: str
    score: float  # e_i . v_u^k of the best interest
    interest: int  # 0-based index of the interest that scored it


@dataclass
class Candidates:
    """A user's candidate list, best first, from release `model_version`. Key: user id."""

    user_id: str
    model_version: str
    items: list[Candidate]
    event_ts: float | None  # the click the list answers (published_ts - event_ts: click -> candidates latency)
    published_ts: float
    refresh: bool = False  # recomputed by `mindstream refresh`, not by a click

    def to_json(self) -> bytes:
        value = {"user_id": self.user_id, "model_version": self.model_version, "items": self.items,
                 "event_ts": self.event_ts, "published_ts": self.published_ts}
        if self.refresh:
            value["refresh"] = True
        return _dumps(value)

    def to_dict(self) -> dict[str, Any]:
        """The wire value as a dict (for a JSON document that embeds it, e.g. GET /users/{id})."""
        return json.loads(self.to_json())

    @classmethod
    def from_json(cls, raw: bytes | None) -> Candidates:
        obj = _object(raw)
        items = obj.get("items")
        if not isinstance(items, list):
            raise MessageError("items missing or not a list")
        for n, c in enumerate(items):
            if not (isinstance(c, dict) and isinstance(c.get("item_id"), str) and c["item_id"]
                    and isinstance(c.get("score"), int | float) and not isinstance(c["score"], bool)
                    and isinstance(c.get("interest"), int) and not isinstance(c["interest"], bool)
                    and c["interest"] >= 0):
                raise MessageError(f"items[{n}] is not an {{item_id, score, interest}} object")
        return cls(_text(obj, "user_id", MAX_ID_CHARS), _text(obj, "model_version"), items,
                   _number(obj, "event_ts", optional=True), _number(obj, "published_ts"), obj.get("refresh") is True)


# ------------------------------------------------------------------------------------------ clicks-dlq


@dataclass(frozen=True)
class DeadLetter:
    """A clicks record the worker could not apply: why (`reason`, one of stream/events.py's, or
    processing_error), for a person (`error`), and the original value bytes so it can be replayed.
    Key: the click's key."""

    reason: str
    error: str
    raw: bytes
    ts: float  # when it was dead-lettered

    def to_json(self) -> bytes:
        return _dumps({"reason": self.reason, "error": self.error[:1000],
                       "raw": base64.b64encode(self.raw).decode("ascii"), "ts": self.ts})

    @classmethod
    def from_json(cls, raw: bytes | None) -> DeadLetter:
        obj = _object(raw)
        error = obj.get("error")
        if not isinstance(error, str):
            raise MessageError("error missing or not a string")
        encoded = obj.get("raw")
        if not isinstance(encoded, str):
            raise MessageError("raw missing or not a string")
        try:
            original = base64.b64decode(encoded, validate=True)
        except ValueError as e:  # binascii.Error
            raise MessageError(f"raw is not base64: {e}") from None
        return cls(_text(obj, "reason"), error, original, _number(obj, "ts"))


# ------------------------------------------------------------------------------------------ model-releases


@dataclass(frozen=True)
class Announcement:
    """The release to serve, written by `retrain`/`rollback`, read by every worker's hot swap
    (stream/worker/hotswap.py). The manifest's sha256 pins the release: the manifest holds the sha256 of every
    other file, so a worker that checks both serves exactly the bytes the trainer verified. Key: `current`."""

    version: str
    uri: str  # the release directory
    manifest_sha256: str
    created_ts: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes | None) -> Announcement:
        obj = _object(raw)
        version = _text(obj, "version")
        # the version names a directory under the models dir: no path tricks
        if "/" in version or "\\" in version or version.startswith("."):
            raise MessageError(f"invalid version {version!r}")
        return cls(version, _text(obj, "uri"), _text(obj, "manifest_sha256"), _number(obj, "created_ts"))

    def release_dir(self, models_dir: str | Path | None) -> Path:
        """Where to load the release from: `uri` when it is a directory here; otherwise models_dir/<version>
        (the trainer and the worker may mount the same shared volume at different paths)."""
        uri = self.uri.removeprefix("file://")
        if Path(uri).is_dir() or models_dir is None:
            return Path(uri)
        return Path(models_dir) / self.version


# ------------------------------------------------------------------------------------------ items


@dataclass(frozen=True)
class CatalogItem:
    """An item of the catalog: recallable before anyone clicks it, represented by its category's vector in a
    release that was not trained on it (model/new_items.py). Key: item id."""

    item_id: str
    category: str | None = None
    ts: float | None = None  # when it was announced

    def to_json(self) -> bytes:
        value: dict[str, Any] = {"item_id": self.item_id}
        if self.category is not None:
            value["category"] = self.category
        if self.ts is not None:
            value["ts"] = self.ts
        return _dumps(value)

    @classmethod
    def from_json(cls, raw: bytes | None) -> CatalogItem:
        obj = _object(raw)
        category = None if obj.get("category") is None else _text(obj, "category", MAX_ID_CHARS)
        return cls(_text(obj, "item_id", MAX_ID_CHARS), category, _number(obj, "ts", optional=True))


# ------------------------------------------------------------------------------------------ refresh-requests


@dataclass(frozen=True)
class RefreshRequest:
    """Recompute one user (the key) from the stored sequence with the served release (`mindstream refresh`).
    The refresh agent needs only the key; the value says when it was asked."""

    requested_ts: float

    def to_json(self) -> bytes:
        return _dumps({"requested_ts": self.requested_ts})

    @classmethod
    def from_json(cls, raw: bytes | None) -> RefreshRequest:
        return cls(_number(_object(raw), "requested_ts"))
