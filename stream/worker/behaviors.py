"""The behavior-sequence update: one user's clicks, bounded, in `ts` order, de-duplicated.

The state is a plain JSON-able dict so it can live in a Faust table (RocksDB store, Kafka changelog):

    {"seq": [[ts, item_id], ...] oldest first, "ids": [recent dedup ids], "profile": {field: value}}

Items are stored as external ids, not tower indices: a later model with a different vocabulary
reads the same sequence.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from stream.events import Click


@dataclass
class Behaviors:
    seq: list[tuple[float, str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    profile: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Behaviors:
        if not state:
            return cls()
        return cls(
            seq=[(float(ts), str(item)) for ts, item in state.get("seq", ())],
            ids=[str(i) for i in state.get("ids", ())],
            profile={str(k): str(v) for k, v in (state.get("profile") or {}).items()},
        )

    def to_state(self) -> dict[str, Any]:
        return {"seq": [[ts, item] for ts, item in self.seq], "ids": list(self.ids), "profile": dict(self.profile)}

    @property
    def items(self) -> list[str]:
        """Item ids, oldest first."""
        return [item for _, item in self.seq]

    def add(self, click: Click, max_len: int, dedup_size: int) -> bool:
        """Apply one click; False when it is a duplicate (already applied), True otherwise.

        A late click (ts older than the newest one kept) is inserted at its place in time; equal
        timestamps keep arrival order. Past `max_len` the oldest clicks go, so a very late click
        may be dropped at once: the sequence is the user's most recent `max_len` clicks.
        """
        key = click.dedup_id
        if key in self.ids:
            return False
        self.ids.append(key)
        if len(self.ids) > dedup_size:
            del self.ids[: len(self.ids) - dedup_size]
        pos = bisect.bisect_right([ts for ts, _ in self.seq], click.ts)
        self.seq.insert(pos, (click.ts, click.item_id))
        if len(self.seq) > max_len:
            del self.seq[: len(self.seq) - max_len]
        if click.profile:
            self.profile.update(click.profile)
        return True
