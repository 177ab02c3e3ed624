"""The JSON Schemas of the topic values (docs/schemas/<topic>.schema.json) and a validator of records read
from a topic: the end-to-end tests validate every message they read."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from stream import topology

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
TOPICS = tuple(t.name for t in topology.TOPICS)
# the message type of each topic (clicks: raw bytes judged by stream/events.py)
MESSAGES = {t.name: t.value for t in topology.TOPICS if t is not topology.CLICKS}


@cache
def validator(topic: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{topic}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(topic: str, value: Any) -> list[str]:
    """What is wrong with `value` as a value of `topic` ([] when it validates)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(value)'}: {e.message}"
            for e in validator(topic).iter_errors(value)]


def validate_records(topic: str, records: list) -> list:
    """Every record's value (JSON) validates against the topic's schema, and the topic's message type
    (stream/messages.py) reads it; returns `records`."""
    for r in records:
        value = json.loads(r.value)
        problems = errors(topic, value)
        assert not problems, f"{topic} record at partition {r.partition} offset {r.offset}: {problems}\n{value}"
        if topic in MESSAGES:
            MESSAGES[topic].from_json(r.value)
    return records
