"""Bad input suite: property-based fuzzing of the click parser and of the behavior-sequence update, and a
catalogue of bad events, each with the outcome the contract specifies (ARCHITECTURE.md, stream/events.py).

The parser's contract: whatever bytes arrive, `parse_click` returns a `Click` or an `InvalidEvent` with a
known reason and never raises (a raise inside the agent costs the event a `processing_error` dead letter
instead of its real reason, or, outside the agent's guard, the worker). The update's contract: the
sequence is ts-ordered, bounded to max_len, de-duplicated by event id, and equals a simple reference model.
"""

from __future__ import annotations

import json
import math
from collections import deque

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stream import events
from stream.events import MAX_ID_CHARS, Click, InvalidEvent, parse_click
from stream.messages import DeadLetter
from stream.worker.behaviors import Behaviors

# database=None: no .hypothesis/ directory in the checkout; the explicit @example cases pin what was found
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

REASONS = {events.OVERSIZED, events.NOT_UTF8, events.NOT_JSON, events.NOT_OBJECT, events.MISSING_FIELD,
           events.WRONG_TYPE, events.BAD_VALUE, events.KEY_MISMATCH}

GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i9", "ts": 1700000000.5, "category": "Drama",
        "profile": {"gender": "F", "age": "25"}}

# JSON values of every kind, including the two input classes that once made the parser raise: integers beyond
# float range and text with lone UTF-16 surrogates (valid JSON as "\\ud800" escapes, not encodable as UTF-8).
LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
texts = st.text() | st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), st.sampled_from(LONE_SURROGATES),
                              st.text(max_size=4))
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.integers()
                | st.integers(10**308, 10**400) | st.floats(allow_nan=False, allow_infinity=False) | texts)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=12)
keys = st.none() | st.binary(max_size=16) | st.just(b"u1")


def check_outcome(result: Click | InvalidEvent) -> None:
    assert isinstance(result, Click | InvalidEvent), result
    if isinstance(result, InvalidEvent):
        assert result.reason in REASONS, result
        assert result.error, result


@FUZZ
@given(raw=st.binary(max_size=512), key=keys)
@example(raw=b"", key=None)
@example(raw=b"\xc3\x28", key=b"u1")  # invalid UTF-8 continuation
@example(raw=b"\xef\xbb\xbf{}", key=None)  # a UTF-8 byte-order mark before the JSON
@example(raw=b"NaN", key=None)
@example(raw=b"[1]", key=b"u1")
@example(raw=b"{}", key=b"u1")
@example(raw=b'{"user_id": "u1", "item_id": "i9", "ts": 1}', key=b"u1")
def test_arbitrary_bytes_never_raise_and_fail_at_the_reference_stage(raw: bytes, key: bytes | None) -> None:
    result = parse_click(raw, key)
    check_outcome(result)
    expected = reference_reason(raw, key)
    if expected == "":
        assert isinstance(result, Click), result
    elif expected == "fields":
        assert isinstance(result, InvalidEvent) and result.reason in FIELD_REASONS, result
    else:
        assert isinstance(result, InvalidEvent) and result.reason == expected, (expected, result)


@FUZZ
@given(value=json_values, key=keys)
def test_arbitrary_json_values_never_raise(value: object, key: bytes | None) -> None:
    result = parse_click(json.dumps(value).encode(), key)
    check_outcome(result)
    if not isinstance(value, dict):
        assert result.reason == events.NOT_OBJECT


def _utf8(v: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in v)


def _valid_text(v: object) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= MAX_ID_CHARS and _utf8(v)


def reference_valid(obj: dict, key: bytes | None) -> bool:
    """The contract of a valid click (ARCHITECTURE.md `clicks`), written independently of stream/events.py."""
    if not (_valid_text(obj.get("user_id")) and _valid_text(obj.get("item_id"))):
        return False
    ts = obj.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return False
    try:
        ts = float(ts)  # an integer must be representable as a (finite) float: epoch seconds are floats
    except OverflowError:
        return False
    if not math.isfinite(ts) or ts < 0:
        return False
    for optional in ("event_id", "category"):
        if obj.get(optional) is not None and not _valid_text(obj[optional]):
            return False
    profile = obj.get("profile")
    if profile is not None and not (isinstance(profile, dict)
                                    and all(isinstance(v, str) and _utf8(v) and _utf8(k) for k, v in profile.items())):
        return False
    return key is None or key == obj["user_id"].encode()


FIELD_REASONS = {events.MISSING_FIELD, events.WRONG_TYPE, events.BAD_VALUE, events.KEY_MISMATCH}


def _no_constants(name: str) -> float:
    raise ValueError(name)


def reference_reason(raw: bytes, key: bytes | None, max_bytes: int = 16384) -> str:
    """The contract's judgement of a record's bytes, stage by stage: oversized, not UTF-8, not JSON (NaN and
    Infinity are not JSON), not an object, then its fields ("fields": one of FIELD_REASONS); "" = a valid click."""
    if len(raw) > max_bytes:
        return events.OVERSIZED
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return events.NOT_UTF8
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return events.NOT_JSON
    if not isinstance(obj, dict):
        return events.NOT_OBJECT
    return "" if reference_valid(obj, key) else "fields"


@st.composite
def near_valid_clicks(draw: st.DrawFn) -> dict:
    """A valid click with a few fields dropped, replaced by arbitrary JSON, or extra fields added."""
    obj = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=3, unique=True)):
        action = draw(st.sampled_from(["drop", "replace", "null"]))
        if action == "drop":
            del obj[name]
        elif action == "null":
            obj[name] = None
        else:
            obj[name] = draw(json_values)
    obj.update(draw(st.dictionaries(texts.filter(lambda k: k not in GOOD), json_values, max_size=3)))
    return obj


@FUZZ
@given(obj=near_valid_clicks(), key=st.sampled_from([None, b"u1", b"u2"]))
def test_near_valid_clicks_are_judged_like_the_reference(obj: dict, key: bytes | None) -> None:
    result = parse_click(json.dumps(obj).encode(), key)
    check_outcome(result)
    assert isinstance(result, Click) == reference_valid(obj, key), (obj, result)
    if isinstance(result, Click):
        # a valid click is read exactly; extra fields are ignored (documented acceptance)
        assert (result.user_id, result.item_id, result.ts) == (obj["user_id"], obj["item_id"], float(obj["ts"]))
        assert result.event_id == obj.get("event_id") and result.category == obj.get("category")
        assert result.profile == (obj.get("profile") or {})


@FUZZ
@given(field=st.sampled_from(["user_id", "item_id", "event_id", "category", "profile value", "profile name"]),
       value=texts, ts=st.integers(0, 2**63) | st.integers(10**300, 10**400) | st.just(1700000000.5),
       key=st.sampled_from([None, b"u1"]))
@example(field="user_id", value="\ud800", ts=1, key=b"u1")
@example(field="item_id", value="\udfff", ts=1, key=None)
@example(field="item_id", value="i9", ts=10**400, key=b"u1")
def test_hard_text_and_ts_values_are_judged_like_the_reference(field: str, value: str, ts: int | float,
                                                               key: bytes | None) -> None:
    """Targets the two input classes a general JSON strategy rarely puts in the right place: text with lone
    surrogates in every text field, and integer timestamps up to and beyond float range."""
    obj: dict = {**GOOD, "ts": ts}
    if field == "profile value":
        obj["profile"] = {"age": value}
    elif field == "profile name":
        obj["profile"] = {value: "25"}
    else:
        obj[field] = value
    result = parse_click(json.dumps(obj).encode(), key)
    check_outcome(result)
    assert isinstance(result, Click) == reference_valid(obj, key), (obj, result)
    if isinstance(result, InvalidEvent) and result.reason != events.KEY_MISMATCH:
        assert result.reason == events.BAD_VALUE, result


# ----------------------------------------------------------------------------------- behavior sequence


def reference_sequence(clicks: list[Click], max_len: int, dedup_size: int) -> tuple[list[tuple[float, str]], int]:
    """Every applied click sorted by (ts, arrival), the newest max_len kept; a click is skipped while its dedup
    id is among the last `dedup_size` ids applied. Returns (sequence, clicks applied)."""
    remembered: deque[str] = deque(maxlen=dedup_size)
    applied: list[tuple[float, int, str]] = []
    for n, c in enumerate(clicks):
        if c.dedup_id in remembered:
            continue
        remembered.append(c.dedup_id)
        applied.append((c.ts, n, c.item_id))
    applied.sort()
    return [(ts, item) for ts, _, item in applied[-max_len:]], len(applied)


# Few distinct ids, items and timestamps so that duplicates, ties and late events are frequent.
clicks_strategy = st.lists(
    st.builds(Click, user_id=st.just("u"), item_id=st.sampled_from("abcdef"),
              ts=st.integers(0, 20).map(float), event_id=st.none() | st.sampled_from([f"e{n}" for n in range(25)])),
    max_size=60,
)


@FUZZ
@given(clicks=clicks_strategy, max_len=st.integers(1, 12), dedup_size=st.integers(1, 80),
       replay=st.booleans())
def test_sequence_update_equals_the_reference(clicks: list[Click], max_len: int, dedup_size: int,
                                              replay: bool) -> None:
    if replay:  # at-least-once: the whole stream redelivered right after itself
        clicks = clicks + clicks
    b = Behaviors()
    accepted = 0
    for c in clicks:
        accepted += b.add(c, max_len, dedup_size)
        # the state goes through the table (JSON) after every click, as in the worker
        b = Behaviors.from_state(json.loads(json.dumps(b.to_state())))
    expected, applied = reference_sequence(clicks, max_len, dedup_size)
    assert b.seq == expected
    assert accepted == applied
    assert len(b.seq) <= max_len and len(b.ids) <= dedup_size
    assert [ts for ts, _ in b.seq] == sorted(ts for ts, _ in b.seq)


@FUZZ
@given(clicks=st.lists(st.builds(Click, user_id=st.just("u"), item_id=st.sampled_from("abc"),
                                 ts=st.integers(0, 50).map(float),
                                 event_id=st.integers(0, 30).map(str)), max_size=40),
       order=st.randoms(use_true_random=False))
def test_with_unique_event_ids_the_sequence_does_not_depend_on_arrival_order(clicks: list[Click], order) -> None:
    """Late and shuffled delivery (a partition replayed, a producer retrying) gives the same sequence, as long as
    the dedup memory covers the stream and timestamps are distinct per event."""
    unique = list({(c.event_id): c for c in clicks}.values())
    unique = list({c.ts: c for c in unique}.values())  # equal ts are ordered by arrival, by design
    shuffled = unique + unique
    order.shuffle(shuffled)
    a, b = Behaviors(), Behaviors()
    for c in unique:
        a.add(c, 10, 1000)
    for c in shuffled:
        b.add(c, 10, 1000)
    assert a.seq == b.seq


# ----------------------------------------------------------------------------------- catalogue


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


CATALOGUE: list[tuple[str, bytes | None, bytes | None, str]] = [
    # (case, record value, record key, expected reason; "" = accepted as a valid click)
    ("not JSON", b"user_id=u1&item_id=i9", b"u1", events.NOT_JSON),
    ("truncated JSON", raw(GOOD)[:-3], b"u1", events.NOT_JSON),
    ("not UTF-8 (latin-1 text)", '{"user_id": "Jürgen"}'.encode("latin-1"), b"u1", events.NOT_UTF8),
    ("UTF-16", raw(GOOD).decode().encode("utf-16"), b"u1", events.NOT_UTF8),
    ("no value (tombstone)", None, b"u1", events.MISSING_FIELD),
    ("JSON null", b"null", b"u1", events.NOT_OBJECT),
    ("JSON number", b"42", b"u1", events.NOT_OBJECT),
    ("missing user_id", raw({k: v for k, v in GOOD.items() if k != "user_id"}), None, events.MISSING_FIELD),
    ("missing ts", raw({k: v for k, v in GOOD.items() if k != "ts"}), b"u1", events.MISSING_FIELD),
    ("user_id null", raw({**GOOD, "user_id": None}), b"u1", events.WRONG_TYPE),
    ("item_id a number", raw({**GOOD, "item_id": 9}), b"u1", events.WRONG_TYPE),
    ("ts a string", raw({**GOOD, "ts": "2024-01-01T00:00:00Z"}), b"u1", events.WRONG_TYPE),
    ("ts a list", raw({**GOOD, "ts": [1]}), b"u1", events.WRONG_TYPE),
    ("ts NaN", b'{"user_id": "u1", "item_id": "i9", "ts": NaN}', b"u1", events.NOT_JSON),
    ("ts Infinity", b'{"user_id": "u1", "item_id": "i9", "ts": Infinity}', b"u1", events.NOT_JSON),
    ("ts overflowing to inf", b'{"user_id": "u1", "item_id": "i9", "ts": 1e999}', b"u1", events.BAD_VALUE),
    ("ts negative", raw({**GOOD, "ts": -0.001}), b"u1", events.BAD_VALUE),
    ("profile of numbers", raw({**GOOD, "profile": {"age": 25}}), b"u1", events.WRONG_TYPE),
    ("empty item_id", raw({**GOOD, "item_id": ""}), b"u1", events.BAD_VALUE),
    ("key of another user", raw(GOOD), b"u2", events.KEY_MISMATCH),
    ("1 MB payload", raw({**GOOD, "pad": "x" * (1 << 20)}), b"u1", events.OVERSIZED),
    ("1 MB of nesting", b"[" * (1 << 19) + b"]" * (1 << 19), b"u1", events.OVERSIZED),
    # Documented acceptances (docs/reliability.md):
    ("extra fields ignored", raw({**GOOD, "session": {"id": 3}, "referrer": None}), b"u1", ""),
    ("ts 0 (epoch) accepted", raw({**GOOD, "ts": 0}), b"u1", ""),
    ("far-future ts accepted", raw({**GOOD, "ts": 4.1e9}), b"u1", ""),  # year 2099
    ("unknown item accepted here", raw({**GOOD, "item_id": "no-such-item"}), b"u1", ""),  # worker: kept + DLQ
    ("no key accepted", raw(GOOD), None, ""),
    ("non-ASCII ids accepted", raw({**GOOD, "user_id": "ユーザー", "item_id": "🎬"}), "ユーザー".encode(), ""),
    ("null optionals accepted", raw({**GOOD, "event_id": None, "category": None, "profile": None}), b"u1", ""),
]


@pytest.mark.parametrize(("case", "value", "key", "reason"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue_of_bad_events(case: str, value: bytes | None, key: bytes | None, reason: str) -> None:
    result = parse_click(value, key)
    if reason:
        assert isinstance(result, InvalidEvent), result
        assert result.reason == reason, result.error
    else:
        assert isinstance(result, Click), result


def test_duplicate_event_ids_are_applied_once_even_with_different_content() -> None:
    """The event id alone decides: a producer retry that re-stamped ts or (wrongly) changed the item is still the
    same event, so the first delivery wins."""
    b = Behaviors()
    assert b.add(Click("u1", "i9", 10.0, event_id="e1"), 20, 100)
    assert not b.add(Click("u1", "i9", 10.0, event_id="e1"), 20, 100)
    assert not b.add(Click("u1", "other", 11.0, event_id="e1"), 20, 100)
    assert b.items == ["i9"]


def test_far_future_click_sorts_last_and_stays() -> None:
    """Accepted, not clamped: a click stamped in the future is the user's most recent behavior until clicks with
    later timestamps arrive (documented in docs/reliability.md)."""
    b = Behaviors()
    b.add(Click("u", "future", 4.1e9, event_id="f"), 3, 10)
    for n in range(5):
        b.add(Click("u", f"i{n}", 1.7e9 + n, event_id=str(n)), 3, 10)
    assert b.items == ["i3", "i4", "future"]


# ----------------------------------------------------------------------------------- fixed parser bugs


def test_lone_surrogate_in_user_id_is_invalid_not_raised() -> None:
    result = parse_click(b'{"user_id": "\\ud800", "item_id": "i9", "ts": 1}', b"u1")
    assert isinstance(result, InvalidEvent) and result.reason == events.BAD_VALUE


def test_lone_surrogate_without_key_is_invalid() -> None:
    """Without a key the key check never encodes user_id: the text check itself must reject what has no UTF-8
    form (the worker would fail to encode it as the table/output key, or as state)."""
    for value in (b'{"user_id": "\\ud800", "item_id": "i9", "ts": 1}',
                  b'{"user_id": "u1", "item_id": "\\udfff", "ts": 1}'):
        result = parse_click(value, None)
        assert isinstance(result, InvalidEvent), result
        assert result.reason == events.BAD_VALUE, result


@pytest.mark.parametrize("field_json", [
    b'"event_id": "e\\udc00"',
    b'"category": "\\ud83d"',  # the first half of an emoji's surrogate pair, alone
    b'"profile": {"age": "2\\udbff"}',
    b'"profile": {"a\\ud800": "25"}',
])
def test_lone_surrogate_in_any_text_field_is_bad_value(field_json: bytes) -> None:
    result = parse_click(b'{"user_id": "u1", "item_id": "i9", "ts": 1, ' + field_json + b"}", b"u1")
    assert isinstance(result, InvalidEvent), result
    assert result.reason == events.BAD_VALUE, result
    # the dead letter carries the reason and the original bytes, and is itself valid JSON
    DeadLetter.from_json(DeadLetter(result.reason, result.error, b"x", 0.0).to_json())


def test_surrogate_pair_escape_is_one_valid_character() -> None:
    """A correctly paired escape is an ordinary non-BMP character, not a lone surrogate: accepted."""
    result = parse_click(b'{"user_id": "\\ud83c\\udfac", "item_id": "i9", "ts": 1}', "\U0001F3AC".encode())
    assert isinstance(result, Click) and result.user_id == "\U0001F3AC", result


def test_integer_ts_beyond_float_range_is_invalid_not_raised() -> None:
    result = parse_click(b'{"user_id": "u1", "item_id": "i9", "ts": 1' + b"0" * 400 + b"}", b"u1")
    assert isinstance(result, InvalidEvent) and result.reason == events.BAD_VALUE
    # the largest integers that still round to a finite float are timestamps (far future, but finite)
    assert isinstance(parse_click(b'{"user_id": "u1", "item_id": "i9", "ts": 1' + b"0" * 300 + b"}", b"u1"), Click)
