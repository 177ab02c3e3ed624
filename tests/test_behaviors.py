"""The behavior-sequence update: bounded, in ts order, de-duplicated, round-trips through its table state."""

from __future__ import annotations

import json
import random

from stream.events import Click
from stream.worker.behaviors import Behaviors


def click(item: str, ts: float, event_id: str | None = None, **profile: str) -> Click:
    return Click(user_id="u", item_id=item, ts=ts, event_id=event_id, profile=profile)


def test_appends_in_time_order_and_inserts_late_events_at_their_place() -> None:
    b = Behaviors()
    for item, ts in [("a", 1.0), ("c", 3.0), ("d", 4.0), ("b", 2.0), ("z", 0.5)]:
        assert b.add(click(item, ts, event_id=item), max_len=10, dedup_size=100)
    assert b.items == ["z", "a", "b", "c", "d"]
    assert [ts for ts, _ in b.seq] == sorted(ts for ts, _ in b.seq)


def test_equal_timestamps_keep_arrival_order() -> None:
    b = Behaviors()
    for item in "xyz":
        b.add(click(item, 5.0, event_id=item), max_len=10, dedup_size=100)
    assert b.items == ["x", "y", "z"]


def test_bounded_to_the_most_recent_max_len() -> None:
    b = Behaviors()
    for n in range(30):
        b.add(click(f"i{n}", float(n), event_id=str(n)), max_len=8, dedup_size=100)
    assert b.items == [f"i{n}" for n in range(22, 30)]
    # a click older than everything kept falls off at once
    assert b.add(click("old", 1.0, event_id="old"), max_len=8, dedup_size=100)
    assert "old" not in b.items and len(b.items) == 8


def test_duplicates_by_event_id_and_without_one() -> None:
    b = Behaviors()
    assert b.add(click("a", 1.0, event_id="e1"), 10, 100)
    assert not b.add(click("a", 1.0, event_id="e1"), 10, 100)
    assert b.add(click("a", 2.0, event_id="e2"), 10, 100)  # same item again, a new click
    assert b.add(click("b", 3.0), 10, 100)
    assert not b.add(click("b", 3.0), 10, 100)  # redelivery of a click without event id
    assert b.items == ["a", "a", "b"]


def test_dedup_memory_is_bounded() -> None:
    b = Behaviors()
    for n in range(50):
        b.add(click(f"i{n}", float(n), event_id=f"e{n}"), max_len=100, dedup_size=10)
    assert len(b.ids) == 10
    assert not b.add(click("i49", 49.0, event_id="e49"), 100, 10)  # recent: remembered
    assert b.add(click("i0", 0.0, event_id="e0"), 100, 10)  # long forgotten: applied again


def test_profile_merges_latest_values() -> None:
    b = Behaviors()
    b.add(click("a", 1.0, "1", gender="F", age="25"), 10, 10)
    b.add(click("b", 2.0, "2", age="35"), 10, 10)
    b.add(click("c", 3.0, "3"), 10, 10)
    assert b.profile == {"gender": "F", "age": "35"}


def test_state_round_trips_through_json() -> None:
    rng = random.Random(7)
    b = Behaviors()
    for n in range(40):
        b.add(click(f"i{rng.randrange(20)}", rng.uniform(0, 100), f"e{n}", city="x"), 25, 30)
    state = json.loads(json.dumps(b.to_state()))
    again = Behaviors.from_state(state)
    assert again == b
    assert Behaviors.from_state(None) == Behaviors() == Behaviors.from_state({})
