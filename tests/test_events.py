"""Click validation: every kind of bad record is recognised with its reason; good ones parse exactly."""

from __future__ import annotations

import base64
import json

import pytest

from stream import events
from stream.events import Click, InvalidEvent, parse_click
from stream.messages import DeadLetter


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i9", "ts": 1700000000.5, "category": "Drama",
        "profile": {"gender": "F", "age": "25"}}


def test_valid_click_parses_every_field() -> None:
    click = parse_click(raw(GOOD), b"u1")
    assert click == Click(user_id="u1", item_id="i9", ts=1700000000.5, event_id="e1", category="Drama",
                          profile={"gender": "F", "age": "25"})
    assert click.dedup_id == "e1"


def test_optional_fields_may_be_absent_and_key_may_be_absent() -> None:
    click = parse_click(raw({"user_id": "u1", "item_id": "i9", "ts": 17}), None)
    assert isinstance(click, Click)
    assert click.ts == 17.0 and click.event_id is None and click.profile == {}
    # without an event id the click itself identifies a redelivery
    assert click.dedup_id == parse_click(raw({"user_id": "u1", "item_id": "i9", "ts": 17.0})).dedup_id


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not utf-8", events.NOT_UTF8),
        (b"{not json", events.NOT_JSON),
        (b"", events.NOT_JSON),
        (b'{"user_id": "u1", "item_id": "i", "ts": NaN}', events.NOT_JSON),
        (b"[" * 100000 + b"]" * 100000, events.OVERSIZED),
        (raw([GOOD]), events.NOT_OBJECT),
        (raw("u1"), events.NOT_OBJECT),
        (raw({k: v for k, v in GOOD.items() if k != "user_id"}), events.MISSING_FIELD),
        (raw({k: v for k, v in GOOD.items() if k != "item_id"}), events.MISSING_FIELD),
        (raw({k: v for k, v in GOOD.items() if k != "ts"}), events.MISSING_FIELD),
        (raw({**GOOD, "user_id": 1}), events.WRONG_TYPE),
        (raw({**GOOD, "item_id": ["i"]}), events.WRONG_TYPE),
        (raw({**GOOD, "ts": "1700000000"}), events.WRONG_TYPE),
        (raw({**GOOD, "ts": True}), events.WRONG_TYPE),
        (b'{"user_id": "u1", "item_id": "i", "ts": 1e400}', events.BAD_VALUE),  # parses to inf
        (raw({**GOOD, "ts": -1}), events.BAD_VALUE),
        (raw({**GOOD, "event_id": 5}), events.WRONG_TYPE),
        (raw({**GOOD, "category": {"a": 1}}), events.WRONG_TYPE),
        (raw({**GOOD, "profile": {"age": 25}}), events.WRONG_TYPE),
        (raw({**GOOD, "profile": "F"}), events.WRONG_TYPE),
        (raw({**GOOD, "user_id": ""}), events.BAD_VALUE),
        (raw({**GOOD, "item_id": "x" * 1000}), events.BAD_VALUE),
    ],
)
def test_bad_records_get_their_reason(payload: bytes, reason: str) -> None:
    result = parse_click(payload, b"u1", max_bytes=16384)
    assert isinstance(result, InvalidEvent), result
    assert result.reason == reason, result.error
    assert result.error


def test_deeply_nested_json_is_rejected_not_raised() -> None:
    result = parse_click(b"[" * 50000 + b"]" * 50000, None, max_bytes=1 << 20)
    assert isinstance(result, InvalidEvent) and result.reason == events.NOT_JSON


def test_missing_value_and_key_mismatch() -> None:
    assert parse_click(None, b"u1").reason == events.MISSING_FIELD
    assert parse_click(raw(GOOD), b"someone-else").reason == events.KEY_MISMATCH


def test_size_limit_is_inclusive() -> None:
    payload = raw(GOOD)
    assert isinstance(parse_click(payload, b"u1", max_bytes=len(payload)), Click)
    assert parse_click(payload, b"u1", max_bytes=len(payload) - 1).reason == events.OVERSIZED


def test_dead_letter_keeps_the_original_bytes() -> None:
    original = b"\x00\xffgarbage"
    raw = DeadLetter(events.NOT_UTF8, "bad byte", original, 123.0).to_json()
    record = json.loads(raw)
    assert set(record) == {"reason", "error", "raw", "ts"}
    assert base64.b64decode(record["raw"]) == original
    assert record["reason"] == "not_utf8" and record["ts"] == 123.0
    assert DeadLetter.from_json(raw) == DeadLetter(events.NOT_UTF8, "bad byte", original, 123.0)
    assert base64.b64decode(json.loads(DeadLetter(events.MISSING_FIELD, "x", b"", 1.0).to_json())["raw"]) == b""
