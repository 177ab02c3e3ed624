"""docs/schemas/: one JSON Schema per topic value, each a valid Draft 2020-12 schema that the values the code
builds satisfy and malformed values do not. (The end-to-end tests validate what they read from the broker:
tests/test_pipeline.py.)"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from stream.commands.announce import Announcement
from stream.commands.produce import pipeline_topics
from stream.config import MODEL_RELEASES, Settings
from stream.events import Click, dead_letter, parse_click
from stream.worker.behaviors import Behaviors
from stream.worker.interests import interests_message
from tests.schemas import SCHEMAS, TOPICS, errors, validator


def test_every_topic_has_a_valid_schema() -> None:
    assert {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")} == set(TOPICS)
    assert set(pipeline_topics(Settings())) | {MODEL_RELEASES} <= set(TOPICS)
    for topic in TOPICS:
        schema = validator(topic).schema
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema["description"]


def test_the_values_the_code_builds_validate() -> None:
    click = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "ts": time.time(), "category": "c",
             "profile": {"age": "18-24"}}
    assert isinstance(parse_click(json.dumps(click).encode(), b"u1"), Click)  # the worker accepts it too
    assert not errors("clicks", click)
    behaviors = Behaviors(seq=[(1.0, "i1"), (2.0, "i2")])
    release = SimpleNamespace(version="v1")
    interests = interests_message("u1", release, np.ones((2, 4), dtype=np.float32), behaviors, 2.0)
    assert not errors("user-interests", interests)
    candidates = {"user_id": "u1", "model_version": "v1", "event_ts": 2.0, "published_ts": 2.5,
                  "items": [{"item_id": "i9", "score": 0.7, "interest": 1}]}
    assert not errors("candidates", candidates)
    announcement = json.loads(Announcement("v1", "/models/v1", "a" * 64, time.time()).to_bytes())
    assert not errors("model-releases", announcement)
    assert not errors("clicks-dlq", dead_letter(b"{oops", "not_json", "Expecting value", time.time()))
    assert not errors("refresh-requests", {"requested_ts": time.time()})
    assert not errors("items", {"item_id": "i1", "category": "c", "ts": 1.0})
    assert not errors("items", {"item_id": "i1"})


@pytest.mark.parametrize(("topic", "value", "where"), [
    ("clicks", {"user_id": "u1", "ts": 1.0}, "'item_id' is a required property"),
    ("clicks", {"user_id": "u1", "item_id": 7, "ts": 1.0}, "item_id"),
    ("clicks", {"user_id": "u1", "item_id": "i1", "ts": -1}, "ts"),
    ("clicks", {"user_id": "u1", "item_id": "i1", "ts": 1.0, "profile": {"age": 3}}, "profile/age"),
    ("user-interests", {"user_id": "u1", "model_version": "v1", "interests": [], "seq_len": 1, "event_ts": 1.0,
                        "computed_ts": 1.0}, "interests"),
    ("candidates", {"user_id": "u1", "model_version": "v1", "event_ts": 1.0, "published_ts": 1.0,
                    "items": [{"item_id": "i1", "score": "high", "interest": 0}]}, "items/0/score"),
    ("model-releases", {"version": "v1", "uri": "/m", "manifest_sha256": "abc", "created_ts": 1.0},
     "manifest_sha256"),
    ("clicks-dlq", {"reason": "not_json", "error": "x", "ts": 1.0}, "'raw' is a required property"),
    ("items", {"category": "c"}, "'item_id' is a required property"),
])
def test_malformed_values_do_not_validate(topic: str, value: dict, where: str) -> None:
    found = errors(topic, value)
    assert found and any(where in e for e in found), found
