"""`mindstream candidates`: print the candidate lists the recall agent publishes.

Partitions are assigned directly, without a consumer group: nothing is committed, nothing
else is disturbed, and there is no group join to wait for (on the embedded broker a group
join takes `max_poll_interval_ms`, docs/platform.md#group-joins-are-held). Without `--follow` it reads what the
topic holds when it starts and exits; with `--follow` it keeps printing until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from stream.config import CANDIDATES, Settings
from stream.topic_reader import TopicReader


def read_candidates(bootstrap: str, topic: str, user: str | None = None, follow: bool = False,
                    from_end: bool = False, wait_s: float = 5.0) -> Iterator[dict]:
    """Candidate-list values (dicts) in partition order; `user` filters by key.

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
                value = json.loads(rec.value)
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
                continue  # not ours to judge; the topic's producer is the worker
            if isinstance(value, dict):
                yield value


def latency_ms(value: dict[str, Any]) -> float | None:
    """Click -> candidates latency: published_ts - event_ts, in ms."""
    try:
        return (float(value["published_ts"]) - float(value["event_ts"])) * 1000.0
    except (KeyError, TypeError, ValueError):
        return None


def format_candidates(value: dict[str, Any], top: int = 10) -> str:
    """One readable block: user, model version, latency, then the top items with scores."""
    lat = latency_ms(value)
    items = value.get("items") or []
    head = (f"user {value.get('user_id', '?')}  model {value.get('model_version', '?')}  "
            f"event->candidates {lat:.1f} ms" if lat is not None else
            f"user {value.get('user_id', '?')}  model {value.get('model_version', '?')}  latency n/a")
    shown = [f"{c.get('item_id')} ({float(c.get('score', 'nan')):.3f}, k{c.get('interest', '?')})"
             for c in items[:top]]
    more = f"  ... {len(items) - top} more" if len(items) > top else ""
    return f"{head}  [{len(items)} items]\n    " + "  ".join(shown) + more


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Print candidate lists from the candidates topic: user, model version, event->candidates "
                     "latency (published_ts - event_ts) and the top items with their scores.")
    settings = Settings.from_env()
    p.add_argument("--bootstrap", default=settings.bootstrap,
                   help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP; default %(default)s)")
    p.add_argument("--topic", default=settings.topic(CANDIDATES),
                   help="candidates topic (env MINDSTREAM_TOPIC_PREFIX is prepended; default %(default)s)")
    p.add_argument("--user", default=None, help="only this user id (default: every user)")
    p.add_argument("--follow", action="store_true", help="keep printing new lists until Ctrl-C")
    p.add_argument("--new-only", action="store_true", help="skip what the topic holds already (with --follow)")
    p.add_argument("--top", type=int, default=10, help="items shown per list (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print each value as one JSON line instead")


def print_candidates(values: Iterator[dict], top: int, as_json: bool, out: TextIO) -> int:
    n = 0
    for value in values:
        print(json.dumps(value) if as_json else format_candidates(value, top), file=out, flush=True)
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
