"""`mindstream retrain`: the daily training job. Recent clicks from Kafka -> training set -> release -> announce.

    mindstream retrain --models models/ --days 7 [--base ../shared/data/ml-100k] [--bootstrap host:port]

1. Export: every partition of `clicks` is read from the beginning up to the end offsets taken at the start
   (kafka-python, partitions assigned: no consumer group, no offsets committed). Each record is judged by the
   worker's own validation (stream/events.py); invalid ones are skipped and counted by reason. Clicks older
   than --days (by event `ts`) are left out, redelivered duplicates are dropped. The `items` catalog is read
   too: a click without a category takes its item's catalog category, so the items the workers served as new
   items (stream/worker/catalog.py) are trained as ordinary items, with their category.
2. The training set is written as clicks JSONL (the format model/data.py reads) to
   <models>/datasets/<version>.jsonl, the base dataset's interactions first when --base is given. Items seen
   only in the stream enter the vocabulary like any other.
3. train_release writes models/<version>; it is verified with load_release (CURRENT is put back if that
   fails) and announced on `model-releases`, where the workers hot-swap to it (stream/worker/hotswap.py).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from model.data import load_dataset
from model.priority import Priority
from model.release import ReleaseError, current_release_dir, load_release, new_version, set_current
from model.settings import add_flags, from_args, setting
from stream.commands.announce import announcement_for, publish
from stream.config import Settings
from stream.events import Click, InvalidEvent, parse_click
from stream.topic_reader import read_to_end
from stream.topology import CLICKS, ITEMS, MODEL_RELEASES
from stream.worker import catalog

if TYPE_CHECKING:
    from model.mind import MINDConfig
    from model.train import TrainConfig

DAYS = 7.0  # training window over click `ts`; 0 = every click in the topic
# Base rows get timestamps 0, 1, 2, ...: far before any real click, so a user's base history comes first.
BASE_TS_START = 0.0


@dataclass
class ExportStats:
    records: int = 0
    kept: int = 0
    too_old: int = 0
    duplicates: int = 0
    invalid: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"records": self.records, "kept": self.kept, "too_old": self.too_old,
                "duplicates": self.duplicates, "invalid": dict(self.invalid)}


def read_clicks(bootstrap: str, topic: str, since_ts: float | None, max_event_bytes: int = 16384,
                timeout_s: float = 60.0) -> tuple[list[Click], ExportStats]:
    """Valid clicks of `topic` with ts >= since_ts (None: all), in partition/offset order; no topic: none."""
    stats = ExportStats()
    clicks: list[Click] = []
    seen: set[tuple[str, str]] = set()
    for record in read_to_end(bootstrap, [topic], timeout_s):
        stats.records += 1
        parsed = parse_click(record.value, record.key, max_event_bytes)
        if isinstance(parsed, InvalidEvent):
            stats.invalid[parsed.reason] += 1
            continue
        if since_ts is not None and parsed.ts < since_ts:
            stats.too_old += 1
            continue
        if (parsed.user_id, parsed.dedup_id) in seen:
            stats.duplicates += 1  # at-least-once delivery: the same click twice
            continue
        seen.add((parsed.user_id, parsed.dedup_id))
        clicks.append(parsed)
        stats.kept += 1
    return clicks, stats


def write_training_set(path: Path, clicks: list[Click], base: str | Path | None = None,
                       categories: dict[str, str] | None = None) -> int:
    """Clicks JSONL at `path` (base interactions first); returns the number of rows. `categories` (the `items`
    catalog) gives a click that names none its item's category."""
    categories = categories or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        if base is not None:
            data = load_dataset(base)
            ts = BASE_TS_START
            shown: Counter[str] = Counter()  # rows written per item: the category to put on the next one
            for user, items in data.sequences.items():
                profile = data.user_profile.get(user)
                for n, item in enumerate(items):
                    row: dict = {"user_id": user, "item_id": item, "ts": ts}
                    ts += 1.0
                    # a row holds one category; an item's rows take its categories in turn, so an item with
                    # at least as many rows as categories keeps them all
                    cats = data.item_categories.get(item)
                    if cats:
                        row["category"] = cats[shown[item] % len(cats)]
                        shown[item] += 1
                    if profile and n == 0:
                        row["profile"] = profile
                    f.write(json.dumps(row) + "\n")
                    rows += 1
        for click in clicks:
            row = {"user_id": click.user_id, "item_id": click.item_id, "ts": click.ts}
            if click.event_id is not None:
                row["event_id"] = click.event_id
            category = click.category if click.category is not None else categories.get(click.item_id)
            if category is not None:
                row["category"] = category
            if click.profile:
                row["profile"] = click.profile
            f.write(json.dumps(row) + "\n")
            rows += 1
    tmp.replace(path)
    return rows


def retrain(models_dir: str | Path, bootstrap: str, topic_prefix: str = "", days: float = DAYS,
            base: str | Path | None = None, model_cfg: MINDConfig | None = None,
            train_cfg: TrainConfig | None = None, announce: bool = True,
            now: float | None = None) -> tuple[Path, ExportStats]:
    """The whole job; returns the verified release directory and the export statistics."""
    from model.train import train_release

    models_dir = Path(models_dir)
    since = None if days <= 0 else (time.time() if now is None else now) - days * 86400.0
    clicks, stats = read_clicks(bootstrap, topic_prefix + CLICKS.name, since)
    version = new_version()
    dataset = models_dir / "datasets" / f"{version}.jsonl"
    write_training_set(dataset, clicks, base, catalog.read_topic(bootstrap, topic_prefix + ITEMS.name))
    try:
        previous = current_release_dir(models_dir).name
    except ReleaseError:
        previous = None  # the first release
    try:
        path = train_release(dataset, models_dir, model_cfg, train_cfg, version=version)
    except Exception:
        dataset.unlink(missing_ok=True)  # no release names it
        raise
    try:
        load_release(path)
    except ReleaseError:
        # train_release already made it CURRENT: put the serving release back before anyone starts on it
        if previous is not None:
            set_current(models_dir, previous)
        raise
    if announce:
        publish(bootstrap, topic_prefix + MODEL_RELEASES.name, announcement_for(path))
    return path, stats


# ----------------------------------------------------------------------------- command line


@dataclass(frozen=True)
class RetrainSettings:
    """What retrain adds to `mindstream train`'s settings."""

    days: float = setting(DAYS, "train on clicks whose ts is within this many days; 0 = all",
                          env="MINDSTREAM_RETRAIN_DAYS")
    base: str = setting("", "dataset joined with the exported clicks (any format `train` reads)",
                        env="MINDSTREAM_RETRAIN_BASE")


def configure(parser: argparse.ArgumentParser) -> None:
    from model.mind import MINDConfig
    from model.train import TrainConfig

    parser.description = (
        "Export the recent clicks from Kafka, train MIND on them (optionally joined with a base dataset), write "
        "and verify a release under --models, make it CURRENT and announce it on model-releases. Training flags "
        "are those of `mindstream train` and read the same MINDSTREAM_<FLAG> variables."
    )
    add_flags(parser, Settings, ["models_dir", "bootstrap", "topic_prefix"])
    add_flags(parser, RetrainSettings)
    parser.add_argument("--no-announce", action="store_true", help="write and verify the release, announce nothing")
    add_flags(parser, MINDConfig)
    add_flags(parser, TrainConfig)
    add_flags(parser, Priority)


def run(args: argparse.Namespace) -> int:
    from model.mind import MINDConfig
    from model.train import TrainConfig

    # the whole job yields to the workers on its cores: stream/cli.py applied its priority (model/priority.py)
    train_cfg = from_args(TrainConfig, args)
    path, stats = retrain(args.models_dir, args.bootstrap, args.topic_prefix, args.days, args.base or None,
                          from_args(MINDConfig, args), train_cfg, announce=not args.no_announce)
    print(json.dumps({"release": str(path), "export": stats.to_dict(),
                      "announced": not args.no_announce}, indent=2))
    return 0
