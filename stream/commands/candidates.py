"""`mindstream candidates`: print the candidate lists the recall agent publishes.

Partitions are assigned directly, without a consumer group: nothing is committed, nothing
else is disturbed, and there is no group join to wait for (on the embedded broker a group
join takes `max_poll_interval_ms`, docs/platform.md#group-joins-are-held). Without `--follow` it reads what the
topic holds when it starts and exits; with `--follow` it keeps printing until Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from typing import TextIO

from model.settings import add_flags
from stream.config import Settings
from stream.messages import Candidates, MessageError
from stream.topic_reader import TopicReader
from stream.topology import CANDIDATES


def read_candidates(bootstrap: str, topic: str, user: str | None = None, follow: bool = False,
                    from_end: bool = False, wait_s: float = 5.0) -> Iterator[Candidates]:
    """Candidate lists in partition order; `user` filters by key.

    Without `follow` it stops once every partition's end (taken at the start) is reached. A missing topic
    yields nothing after `wait_s` (with `follow` it is waited for).
    """
    with TopicReader(bootstrap, topic, from_end=from_end, client_id="mindstream-candidates") as reader:
        if not reader.wait_for_partitions(math.inf if follow else wait_s):
            return
        records = reader.follow() if follow else reader.read_to_end(math.inf)
        key = user.encode() if user is not None else None
        for rec in records:
            if key is not None and rec.key != key:
                continue
            try:
                value = Candidates.from_json(rec.value)
            except MessageError:
                continue  # not ours to judge; the topic's producer is the worker
            yield value


def latency_ms(value: Candidates) -> float | None:
    """Click -> candidates latency: published_ts - event_ts, in ms (None for a list no click caused)."""
    return None if value.event_ts is None else (value.published_ts - value.event_ts) * 1000.0


def format_candidates(value: Candidates, top: int = 10) -> str:
    """One readable block: user, model version, latency, then the top items with scores."""
    lat = latency_ms(value)
    items = value.items
    head = f"user {value.user_id}  model {value.model_version}  " + (
        f"event->candidates {lat:.1f} ms" if lat is not None else "latency n/a")
    shown = [f"{c['item_id']} ({c['score']:.3f}, k{c['interest']})" for c in items[:top]]
    more = f"  ... {len(items) - top} more" if len(items) > top else ""
    return f"{head}  [{len(items)} items]\n    " + "  ".join(shown) + more


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Print candidate lists from the candidates topic: user, model version, event->candidates "
                     "latency (published_ts - event_ts) and the top items with their scores.")
    settings = Settings.from_env()
    add_flags(p, Settings, ["bootstrap"])
    p.add_argument("--topic", default=settings.topic(CANDIDATES.name),
                   help="candidates topic (env MINDSTREAM_TOPIC_PREFIX is prepended; default %(default)s)")
    p.add_argument("--user", default=None, help="only this user id (default: every user)")
    p.add_argument("--follow", action="store_true", help="keep printing new lists until Ctrl-C")
    p.add_argument("--new-only", action="store_true", help="skip what the topic holds already (with --follow)")
    p.add_argument("--top", type=int, default=10, help="items shown per list (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print each value as one JSON line instead")


def print_candidates(values: Iterator[Candidates], top: int, as_json: bool, out: TextIO) -> int:
    n = 0
    for value in values:
        print(value.to_json().decode("utf-8") if as_json else format_candidates(value, top), file=out, flush=True)
        n += 1
    return n


def run(args: argparse.Namespace) -> int:
    from stream.errors import CommandError

    if args.top < 1:
        raise CommandError("--top must be >= 1")
    values = read_candidates(args.bootstrap, args.topic, user=args.user, follow=args.follow,
                             from_end=args.new_only)
    try:
        n = print_candidates(values, args.top, args.json, sys.stdout)
    except KeyboardInterrupt:
        return 0
    if not args.json:
        who = f" for user {args.user}" if args.user is not None else ""
        print(f"{n} candidate list(s){who} on {args.topic}", file=sys.stderr)
    return 0
