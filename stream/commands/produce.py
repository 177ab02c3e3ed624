"""`mindstream produce`: replay a dataset or the simulator onto the `clicks` topic.

Sources:
* a click log (JSONL or CSV with `user_id,item_id,ts[,category,event_id]`) is replayed in file
  order, keeping each row's `event_id` (so a second replay is de-duplicated by the worker);
* any other format `model.data.load_dataset` reads (Amazon sequences, MovieLens atomic files)
  is replayed user-interleaved: round n sends every user's n-th click, so each user's sequence
  grows in its own time order while all users are active at once;
* `--simulate` draws from the seeded simulator (stream/commands/simulate.py);
* `--items FILE` publishes an item catalog (JSONL or CSV: `item_id,category[,ts]`) to the `items` topic,
  keyed by item id: the workers index the items the served model does not know at once (stream/worker/catalog.py).

`ts` is stamped with the send time by default: `candidates` and the worker's
`mindstream_event_to_candidates_seconds` measure latency as published_ts - event ts, which is
only meaningful for clicks happening now. `--keep-ts` sends the source's timestamps instead.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from model.data import DataError, iter_json_objects, load_dataset, parse_ts
from model.settings import add_flags
from stream.commands.simulate import ClickSimulator, add_sim_arguments, sim_config_from
from stream.config import Settings
from stream.topic_writer import SendSummary, ensure_topics, send_keyed
from stream.topology import CLICKS, ITEMS, PIPELINE
from stream.worker.catalog import read_catalog, record

CLICK_LOG_SUFFIXES = (".jsonl", ".ndjson", ".csv")


# --------------------------------------------------------------------------- sources


def _check_click(where: str, row: dict) -> dict:
    for key in ("user_id", "item_id"):
        value = row.get(key)
        if value is None or not str(value).strip():
            raise DataError(f"{where}: missing `{key}`")
    out: dict = {"user_id": str(row["user_id"]).strip(), "item_id": str(row["item_id"]).strip()}
    if row.get("ts") not in (None, ""):
        out["ts"] = parse_ts(where, row["ts"])
    for key in ("event_id", "category"):
        if row.get(key) not in (None, ""):
            out[key] = str(row[key])
    profile = row.get("profile")
    if profile:
        if not isinstance(profile, dict) or not all(isinstance(v, str) for v in profile.values()):
            raise DataError(f"{where}: `profile` must be an object of strings")
        out["profile"] = profile
    return out


def read_click_log(path: Path) -> Iterator[dict]:
    """Rows of a JSONL or CSV click log in file order; bad rows raise DataError(`file:line: ...`)."""
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            missing = [k for k in ("user_id", "item_id") if k not in reader.fieldnames]
            if missing:
                raise DataError(f"{path}:1: header lacks {', '.join(missing)} (need user_id,item_id[,ts,category])")
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{path}:{reader.line_num}: expected {len(reader.fieldnames)} fields")
                yield _check_click(f"{path}:{reader.line_num}", row)
        return
    for n, row in iter_json_objects(path):
        yield _check_click(f"{path}:{n}", row)


def interleaved_dataset(path: Path) -> Iterator[dict]:
    """A dataset of per-user sequences (no global order) as clicks, round-robin over users."""
    data = load_dataset(path)
    users = list(data.sequences.items())
    for n in range(max(len(s) for _, s in users)):
        for user, seq in users:
            if n < len(seq):
                item = seq[n]
                event = {"event_id": f"{data.name}-{user}-{n}", "user_id": user, "item_id": item}
                cats = data.item_categories.get(item)
                if cats:
                    event["category"] = cats[0]
                profile = data.user_profile.get(user)
                if profile:
                    event["profile"] = profile
                yield event


@dataclass
class Source:
    """A replayable click source: `events()` starts it over; `total` is its length."""

    events: Callable[[], Iterator[dict]]
    total: int
    description: str


def open_source(path: Path | None, simulator: ClickSimulator | None) -> Source:
    """A file or the simulator as a Source. A file is read through once here, so a bad row is
    reported (DataError, `file:line: ...`) before anything is sent."""
    if simulator is not None:
        cfg = simulator.cfg
        return Source(simulator.events, simulator.expected_events(),
                      f"simulator (seed {cfg.seed}, {cfg.n_users} users, {cfg.n_items} items)")
    assert path is not None
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file() and path.suffix.lower() in CLICK_LOG_SUFFIXES:
        return Source(lambda: read_click_log(path), sum(1 for _ in read_click_log(path)), f"click log {path}")
    events = list(interleaved_dataset(path))
    return Source(lambda: iter(events), len(events), f"dataset {path} (users interleaved)")


def limit_users(events: Iterator[dict], users: int) -> Iterator[dict]:
    """Only the clicks of the first `users` distinct users seen."""
    allowed: set[str] = set()
    for e in events:
        u = e["user_id"]
        if u not in allowed:
            if len(allowed) >= users:
                continue
            allowed.add(u)
        yield e


# --------------------------------------------------------------------------- sending


@dataclass
class ProduceSummary(SendSummary):
    users: set[str] = field(default_factory=set)


def pipeline_topics(settings: Settings) -> list[str]:
    """The topics created before a worker starts (stream/topology.py PIPELINE), with the deployment's prefix."""
    return [settings.topic(t.name) for t in PIPELINE]


def produce(events: Iterator[dict], bootstrap: str, topic: str, rate: float = 0.0, limit: int | None = None,
            keep_ts: bool = False, progress: bool = True, total: int | None = None,
            partitions: int | None = None) -> ProduceSummary:
    """Send `events` (clicks topic values) keyed by user id; returns what was sent. The topic is created
    with `partitions` (default: the workers' MINDSTREAM_PARTITIONS) if it does not exist."""
    ensure_topics(bootstrap, [topic], partitions or Settings.from_env().partitions)
    users: set[str] = set()

    def to_record(event: dict) -> tuple[bytes, bytes]:
        if not keep_ts or "ts" not in event:
            event = {**event, "ts": time.time()}
        users.add(event["user_id"])
        return event["user_id"].encode(), json.dumps(event, separators=(",", ":")).encode()

    if limit is not None:
        events = itertools.islice(events, limit)
        total = limit if total is None else min(limit, total)
    sent = send_keyed(events, to_record, bootstrap, topic, rate=rate, progress=progress, total=total)
    return ProduceSummary(**vars(sent), users=users)


# --------------------------------------------------------------------------- command line


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Replay clicks onto the clicks topic (key = user_id, JSON value per docs/ARCHITECTURE.md) "
                     "from a dataset file or the built-in simulator.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path,
                     help="click log (JSONL/CSV: user_id,item_id[,ts,category,event_id]) or any dataset that "
                          "`mindstream train` reads (Amazon .txt, MovieLens directory)")
    src.add_argument("--simulate", action="store_true", help="draw clicks from the seeded simulator")
    src.add_argument("--items", type=Path, metavar="FILE",
                     help="publish an item catalog (JSONL/CSV: item_id,category[,ts]) to the items topic")
    settings = Settings.from_env()
    add_flags(p, Settings, ["bootstrap"])
    p.add_argument("--topic", default=settings.topic(CLICKS.name),
                   help="clicks topic (env MINDSTREAM_TOPIC_PREFIX is prepended; default %(default)s)")
    p.add_argument("--items-topic", default=settings.topic(ITEMS.name),
                   help="catalog topic of --items (env MINDSTREAM_TOPIC_PREFIX is prepended; default %(default)s)")
    p.add_argument("--rate", type=float, default=float(os.environ.get("MINDSTREAM_PRODUCE_RATE", "100")),
                   help="events per second, 0 = as fast as possible (env MINDSTREAM_PRODUCE_RATE; "
                        "default %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="stop after this many events (default: all)")
    p.add_argument("--users", type=int, default=None,
                   help="only the clicks of the first N distinct users (default: all)")
    p.add_argument("--keep-ts", action="store_true",
                   help="send the source's timestamps instead of the send time (latency figures then "
                        "mean nothing)")
    add_flags(p, Settings, ["partitions"])  # a topic that must be created gets the workers' count
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_sim_arguments(p)


def produce_items(path: Path, bootstrap: str, topic: str, partitions: int, progress: bool = True) -> SendSummary:
    """Publish the catalog file at `path` to `topic`, keyed by item id (every row is checked before the first
    send: a bad file sends nothing)."""
    items = list(read_catalog(path))
    ensure_topics(bootstrap, [topic], partitions)
    return send_keyed(items, record, bootstrap, topic, progress=progress, total=len(items),
                      unit="item")


def run(args: argparse.Namespace) -> int:
    from stream.errors import CommandError

    if args.items is not None:
        s = produce_items(args.items, args.bootstrap, args.items_topic, args.partitions, not args.no_progress)
        print(f"sent {s.sent} items to {args.items_topic} in {s.elapsed_s:.2f} s"
              + (f"; {s.failed} failed, first error: {s.first_error}" if s.failed else ""))
        return 1 if s.failed else 0
    if args.rate < 0 or (args.limit is not None and args.limit < 0) or (args.users is not None and args.users < 1):
        raise CommandError("--rate and --limit must be >= 0, --users >= 1")
    try:
        sim = ClickSimulator(sim_config_from(args)) if args.simulate else None
    except ValueError as e:  # simulator settings out of range
        raise CommandError(str(e)) from e
    source = open_source(args.data, sim)
    events = source.events()
    total: int | None = source.total
    if args.users is not None:
        events, total = limit_users(events, args.users), None
    print(f"replaying {source.description} to {args.topic} at {args.bootstrap} "
          f"({'as fast as possible' if not args.rate else f'{args.rate:g} events/s'})", flush=True)
    s = produce(events, args.bootstrap, args.topic, rate=args.rate, limit=args.limit, keep_ts=args.keep_ts,
                progress=not args.no_progress, total=total,
                partitions=args.partitions)
    print(f"sent {s.sent} events of {len(s.users)} users in {s.elapsed_s:.2f} s ({s.rate:,.0f} events/s)"
          + (f"; {s.failed} failed, first error: {s.first_error}" if s.failed else ""))
    return 1 if s.failed else 0
