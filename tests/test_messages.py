"""The message types of stream/messages.py: what to_json writes, from_json reads back, and a value from_json
rejects raises MessageError (the one error a consumer turns into a dead letter or a counted skip)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.messages import (
    Announcement,
    Candidates,
    CatalogItem,
    DeadLetter,
    MessageError,
    RefreshRequest,
    UserInterests,
)

HUGE = b"1" + b"0" * 400  # a JSON integer beyond float range
CANDIDATES = Candidates("u1", "v1", [{"item_id": "i9", "score": 0.7, "interest": 1}], 2.0, 2.5)
EXAMPLES = [CANDIDATES, Candidates("u1", "v1", [], None, 2.5, refresh=True),
            DeadLetter("not_json", "Expecting value", b"\x00{oops", 3.0), Announcement("v1", "/m/v1", "a" * 64, 1.0),
            CatalogItem("i1", "c", 1.0), CatalogItem("i2"), RefreshRequest(4.0)]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_from_json_reads_what_to_json_wrote(message: object) -> None:
    assert type(message).from_json(message.to_json()) == message


def test_user_interests_round_trip_keeps_the_vectors() -> None:
    sent = UserInterests("u1", "v1", np.array([[0.5, -1.0], [2.0, 0.25]], dtype=np.float32), 3, 1.0, 2.0,
                         ["a", "b"], refresh=True)
    got = UserInterests.from_json(sent.to_json())
    assert got.interests.dtype == np.float32 and (got.interests == sent.interests).all()
    assert (got.user_id, got.seq_len, got.history, got.refresh) == ("u1", 3, ["a", "b"], True)
    assert "refresh" not in json.loads(UserInterests("u", "v", sent.interests, 1, 1.0, 1.0).to_json())


@pytest.mark.parametrize("kind, raw", [
    (Candidates, b"not json"),
    (Candidates, b'{"user_id": "u1", "model_version": "v1", "items": {}, "event_ts": 1, "published_ts": 1}'),
    (Candidates, b'{"user_id": "u1", "model_version": "v1", "items": [{"item_id": "i", "score": "x", "interest": 0}],'
                 b' "event_ts": 1, "published_ts": 1}'),
    (Candidates, b'{"user_id": "u1", "model_version": "v1", "items": [], "event_ts": 1}'),
    (DeadLetter, b'{"reason": "x", "error": "e", "raw": "%%%", "ts": 1}'),
    (Announcement, b'{"version": "../etc", "uri": "/m", "manifest_sha256": "a", "created_ts": 1}'),
    (Announcement, b'{"version": "v1", "uri": "/m", "manifest_sha256": "a", "created_ts": true}'),
    (CatalogItem, b'{"category": "c"}'),
    (CatalogItem, b'{"item_id": "i", "ts": 1e999}'),
    (RefreshRequest, b'{"requested_ts": ' + HUGE + b"}"),
    (UserInterests, b'{"user_id": "u", "model_version": "v", "interests": [[' + HUGE + b']], "seq_len": 1,'
                    b' "event_ts": 1, "computed_ts": 1}'),
    (RefreshRequest, b"[]"),
    (UserInterests, None),
])
def test_a_bad_value_raises_message_error(kind: type, raw: bytes | None) -> None:
    with pytest.raises(MessageError):
        kind.from_json(raw)
