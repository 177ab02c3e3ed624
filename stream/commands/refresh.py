"""`mindstream refresh`: recompute every user with stored behaviors, at a bounded rate, so candidates move to
the model now served without waiting for each user's next click (docs/hotswap.md).

    behaviors changelog ──read once──► user ids ──paced, key = user id──► refresh-requests
        ──► refresh agent (stream/worker/interests.py): stored sequence, current release
        ──► user-interests ──► candidates

The users are those with a sequence in the `behaviors` table, read from its changelog topic
(`<app id>-behaviors-changelog`, Faust's name; the app id of the `all` and of the `interest` role are both
looked for) with kafka-python, partitions assigned (no consumer group, nothing committed), from the
beginning up to the high watermark of the first fetch (Tansu's ListOffsets undercounts,
docs/platform.md#end-offsets-undercount). A user whose last changelog record is a tombstone is left out. One
request per user is produced to `refresh-requests`, keyed by user id like `clicks`, created with the partition
count of `clicks` if missing: the request reaches the worker that owns the user's `behaviors` partition.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

from model.settings import add_flags
from stream.config import Settings
from stream.kafka_security import kafka_python_kwargs
from stream.messages import RefreshRequest
from stream.topic_reader import read_to_end
from stream.topic_writer import SendSummary, ensure_topics, send_keyed
from stream.topology import BEHAVIORS, CLICKS, REFRESH_REQUESTS

RATE = 200.0  # requests per second: each costs a tower row, an ANN search and two records


def changelog_topics(settings: Settings) -> list[str]:
    """Where a `behaviors` table may keep its changelog: Faust's `<app id>-behaviors-changelog`, with the app
    id of stream/worker/app.py for the roles that hold the table."""
    base = settings.topic_prefix + settings.app_id
    return [BEHAVIORS.changelog(base), BEHAVIORS.changelog(f"{base}-interest")]


def read_users(bootstrap: str, topics: list[str], timeout_s: float = 60.0) -> list[str]:
    """User ids with a stored sequence in the changelog `topics` that exist, sorted."""
    latest: dict[str, bool] = {}  # user id -> has a sequence (False: tombstone)
    for record in read_to_end(bootstrap, topics, timeout_s):
        try:
            user = json.loads(record.key) if record.key is not None else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(user, str) and user:
            latest[user] = record.value is not None
    return sorted(u for u, stored in latest.items() if stored)


def clicks_partitions(bootstrap: str, settings: Settings) -> int:
    """Partitions of `clicks` (the refresh requests must be co-partitioned with it); the setting if it is missing."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **kafka_python_kwargs())
    try:
        return len(consumer.partitions_for_topic(settings.topic(CLICKS.name)) or ()) or settings.partitions
    finally:
        consumer.close()


@dataclass
class RefreshSummary(SendSummary):
    users: int = 0


def request_refresh(users: list[str], bootstrap: str, topic: str, rate: float, progress: bool = True) -> RefreshSummary:
    """One request per user on `topic` (key = user id) at `rate` per second."""

    def to_record(user: str) -> tuple[bytes, bytes]:
        return user.encode("utf-8"), RefreshRequest(time.time()).to_json()

    sent = send_keyed(users, to_record, bootstrap, topic, rate=rate, progress=progress, total=len(users),
                      unit="user", desc=f"refresh requests to {topic}")
    return RefreshSummary(**vars(sent), users=len(users))


# ----------------------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Recompute every user with stored behaviors with the model the workers serve now: the users are read "
        "from the behaviors table's changelog and one request per user is sent to refresh-requests at --rate "
        "per second; the workers publish fresh interests and candidates stamped with their current version. "
        "Run it once the workers serve the new release (mindstream_model_info)."
    )
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    add_flags(parser, Settings, ["bootstrap", "topic_prefix", "app_id"])  # the workers' (the changelog's name)
    parser.add_argument("--rate", type=float, default=float(os.environ.get("MINDSTREAM_REFRESH_RATE", RATE)),
                        help="requests (users) per second, > 0 [MINDSTREAM_REFRESH_RATE]")
    # refresh-requests, if it must be created, gets the partitions of clicks, or these when clicks does not exist
    add_flags(parser, Settings, ["partitions"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from stream.errors import CommandError

    if not args.rate > 0:
        raise CommandError("--rate must be > 0 (the refresh is bounded)")
    settings = Settings(bootstrap=args.bootstrap, topic_prefix=args.topic_prefix, app_id=args.app_id,
                        partitions=args.partitions)
    topic = settings.topic(REFRESH_REQUESTS.name)
    users = read_users(args.bootstrap, changelog_topics(settings))
    if not users:
        print(f"no stored behaviors in {' or '.join(changelog_topics(settings))}: nothing to refresh")
        return 0
    ensure_topics(args.bootstrap, [topic], clicks_partitions(args.bootstrap, settings))
    print(f"refreshing {len(users)} users via {topic} at {args.bootstrap} ({args.rate:g} users/s)", flush=True)
    s = request_refresh(users, args.bootstrap, topic, args.rate, progress=not args.no_progress)
    print(f"requested {s.sent} of {s.users} users in {s.elapsed_s:.2f} s"
          + (f"; {s.failed} failed, first error: {s.first_error}" if s.failed else ""))
    return 1 if s.failed else 0
