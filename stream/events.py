"""Click validation: the raw bytes of a `clicks` record -> `Click`, or `InvalidEvent` saying why not.

The agent consumes clicks as raw bytes so that nothing a producer sends (not UTF-8, not JSON, a
JSON array, a huge payload) can raise inside the agent: everything is judged here and a bad record
becomes a dead letter on `clicks-dlq` (stream/messages.py `DeadLetter`) instead of a crashed worker.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

MAX_ID_CHARS = 256

# Reasons written to clicks-dlq (and the `reason` label of mindstream_dead_letters_total).
OVERSIZED = "oversized"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
BAD_VALUE = "bad_value"
KEY_MISMATCH = "key_mismatch"
# The `status` of a valid click on an item the serving model was not trained on (mindstream_events_total): kept in
# the behavior sequence, represented by its category vector when one is known; never dead-lettered.
UNKNOWN_ITEM = "unknown_item"


@dataclass(frozen=True)
class Click:
    user_id: str
    item_id: str
    ts: float
    event_id: str | None = None
    category: str | None = None
    profile: dict[str, str] = field(default_factory=dict)

    @property
    def dedup_id(self) -> str:
        """event_id when the producer sent one; else the click itself (item and exact ts), which is what a
        redelivered record repeats."""
        return self.event_id if self.event_id is not None else f"{self.item_id}@{self.ts!r}"


@dataclass(frozen=True)
class InvalidEvent:
    reason: str
    error: str


def _text(obj: dict, name: str, required: bool) -> str | None:
    if name not in obj or (not required and obj[name] is None):
        if required:
            raise _Invalid(MISSING_FIELD, f"missing field {name!r}")
        return None
    value = obj[name]
    if not isinstance(value, str):
        raise _Invalid(WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_CHARS:
        raise _Invalid(BAD_VALUE, f"{name} must have 1..{MAX_ID_CHARS} characters")
    _check_utf8(value, name)
    return value


def _check_utf8(value: str, what: str) -> None:
    # JSON may escape a lone UTF-16 surrogate ("\ud800"): valid JSON, a Python str, but no UTF-8 form, so
    # it could become neither a record key nor table state nor a produced value.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(BAD_VALUE, f"{what} is not encodable as UTF-8 (a lone surrogate escape)") from None


class _Invalid(Exception):
    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


def _validate(obj: Any, key: bytes | None) -> Click:
    if not isinstance(obj, dict):
        raise _Invalid(NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    user_id = _text(obj, "user_id", True)
    item_id = _text(obj, "item_id", True)
    if "ts" not in obj:
        raise _Invalid(MISSING_FIELD, "missing field 'ts'")
    ts = obj["ts"]
    # bool is an int subclass in Python; `true` is not a timestamp
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise _Invalid(WRONG_TYPE, f"ts must be a number (epoch seconds), got {type(ts).__name__}")
    try:
        ts = float(ts)
    except OverflowError:  # a JSON integer beyond float range (Python's int is unbounded)
        raise _Invalid(BAD_VALUE, "ts must be finite epoch seconds, got an integer beyond float range") from None
    if not math.isfinite(ts) or ts < 0:
        raise _Invalid(BAD_VALUE, f"ts must be finite epoch seconds, got {ts!r}")
    event_id = _text(obj, "event_id", False)
    category = _text(obj, "category", False)
    profile = obj.get("profile")
    if profile is None:
        profile = {}
    elif not isinstance(profile, dict) or not all(isinstance(v, str) for v in profile.values()):
        raise _Invalid(WRONG_TYPE, "profile must be an object of strings")
    for name, value in profile.items():
        _check_utf8(name, "profile field name")
        _check_utf8(value, f"profile field {name!r}")
    # The key decides the partition, and the partition decides which worker holds the user's state:
    # a click keyed by anything but its user would update that user's sequence on the wrong worker.
    if key is not None and key != user_id.encode("utf-8"):
        raise _Invalid(KEY_MISMATCH, "record key differs from user_id")
    return Click(user_id=user_id, item_id=item_id, ts=ts, event_id=event_id, category=category, profile=profile)


def parse_click(raw: bytes | None, key: bytes | None = None, max_bytes: int = 16384) -> Click | InvalidEvent:
    """Judge one `clicks` record. `key` is the record key (None when the producer sent none)."""
    if raw is None:
        return InvalidEvent(MISSING_FIELD, "empty record (no value)")
    if len(raw) > max_bytes:
        return InvalidEvent(OVERSIZED, f"{len(raw)} bytes, limit {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return InvalidEvent(NOT_UTF8, str(e))
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as e:
        return InvalidEvent(NOT_JSON, str(e))
    except RecursionError:
        return InvalidEvent(NOT_JSON, "nested too deeply")
    try:
        return _validate(obj, key)
    except _Invalid as e:
        return InvalidEvent(e.reason, e.error)


def _reject_constant(name: str) -> float:
    # NaN / Infinity are not JSON; Python's parser accepts them unless told otherwise
    raise ValueError(f"{name} is not valid JSON")

