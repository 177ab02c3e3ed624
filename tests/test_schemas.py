"""docs/schemas/: one JSON Schema per topic value, each a valid Draft 2020-12 schema that the values the code
builds satisfy and malformed values do not. (The end-to-end tests validate what they read from the broker:
tests/test_pipeline.py.)"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from stream import topology
from stream.commands.produce import pipeline_topics
from stream.config import Settings
from stream.events import Click, parse_click
from stream.messages import Announcement, Candidates, CatalogItem, DeadLetter, RefreshRequest
from stream.worker.behaviors import Behaviors
from stream.worker.interests import interests_message
from tests.schemas import SCHEMAS, TOPICS, errors, validator


def test_every_topic_has_a_valid_schema() -> None:
    assert {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")} == set(TOPICS)
    assert set(pipeline_topics(Settings())) | {topology.MODEL_RELEASES.name} <= set(TOPICS)
    for topic in TOPICS:
        schema = validator(topic).schema
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema["description"]


def test_the_values_the_code_builds_validate() -> None:
    click = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "ts": time.time(), "category": "c",
             "profile": {"age": "18-24"}}
    assert isinstance(parse_click(json.dumps(click).encode(), b"u1"), Click)  # the worker accepts it too
    assert not errors(topology.CLICKS.name, click)
    behaviors = Behaviors(seq=[(1.0, "i1"), (2.0, "i2")])
    release = SimpleNamespace(version="v1")
    interests = interests_message("u1", release, np.ones((2, 4), dtype=np.float32), behaviors, 2.0)
    assert not errors(topology.USER_INTERESTS.name, json.loads(interests.to_json()))
    candidates = Candidates("u1", "v1", [{"item_id": "i9", "score": 0.7, "interest": 1}], 2.0, 2.5, refresh=True)
    assert not errors(topology.CANDIDATES.name, json.loads(candidates.to_json()))
    announcement = json.loads(Announcement("v1", "/models/v1", "a" * 64, time.time()).to_json())
    assert not errors(topology.MODEL_RELEASES.name, announcement)
    dead = DeadLetter("not_json", "Expecting value", b"{oops", time.time())
    assert not errors(topology.CLICKS_DLQ.name, json.loads(dead.to_json()))
    assert not errors(topology.REFRESH_REQUESTS.name, json.loads(RefreshRequest(time.time()).to_json()))
    assert not errors(topology.ITEMS.name, json.loads(CatalogItem("i1", "c", 1.0).to_json()))
    assert not errors(topology.ITEMS.name, json.loads(CatalogItem("i1").to_json()))


@pytest.mark.parametrize(("topic", "value", "where"), [
    (topology.CLICKS.name, {"user_id": "u1", "ts": 1.0}, "'item_id' is a required property"),
    (topology.CLICKS.name, {"user_id": "u1", "item_id": 7, "ts": 1.0}, "item_id"),
    (topology.CLICKS.name, {"user_id": "u1", "item_id": "i1", "ts": -1}, "ts"),
    (topology.CLICKS.name, {"user_id": "u1", "item_id": "i1", "ts": 1.0, "profile": {"age": 3}}, "profile/age"),
    (topology.USER_INTERESTS.name, {"user_id": "u1", "model_version": "v1", "interests": [], "seq_len": 1,
                                    "event_ts": 1.0, "computed_ts": 1.0}, "interests"),
    (topology.CANDIDATES.name, {"user_id": "u1", "model_version": "v1", "event_ts": 1.0, "published_ts": 1.0,
                    "items": [{"item_id": "i1", "score": "high", "interest": 0}]}, "items/0/score"),
    (topology.MODEL_RELEASES.name, {"version": "v1", "uri": "/m", "manifest_sha256": "abc", "created_ts": 1.0},
     "manifest_sha256"),
    (topology.CLICKS_DLQ.name, {"reason": "not_json", "error": "x", "ts": 1.0}, "'raw' is a required property"),
    (topology.ITEMS.name, {"category": "c"}, "'item_id' is a required property"),
])
def test_malformed_values_do_not_validate(topic: str, value: dict, where: str) -> None:
    found = errors(topic, value)
    assert found and any(where in e for e in found), found
