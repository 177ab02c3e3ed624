"""A seeded synthetic multi-interest click stream (`mindstream simulate`).

Items are grouped into categories; every user holds 2-4 latent interests (categories) and
clicks mostly inside them, in bursts: a user stays on one interest for a few clicks and then
switches, as in the paper's motivating example of a user browsing several kinds of goods.
Within a category, item popularity is Zipf-like, so there is co-click structure to learn.

Output is the `clicks` topic's value (ARCHITECTURE.md): `event_id`, `user_id`, `item_id`,
`ts`, `category`, in global time order. Written as JSONL it is a dataset that
`mindstream train --data` reads; iterated, it feeds `mindstream produce --simulate`.

Determinism: every user draws from its own generator seeded by (seed, user number), so the
same configuration yields the same events whatever the interleaving or the consumer.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.progress import Progress


@dataclass(frozen=True)
class SimConfig:
    n_users: int = 2000
    n_items: int = 5000
    n_categories: int = 40
    clicks_per_user: int = 30       # mean; each user's count is Poisson around it (at least 4)
    min_interests: int = 2
    max_interests: int = 4
    p_off_interest: float = 0.05    # a click outside the user's interests (exploration, noise)
    p_switch: float = 0.3           # after a click, move to another of the user's interests
    zipf_a: float = 1.1             # item popularity inside a category
    mean_gap_s: float = 60.0        # mean time between one user's clicks
    start_ts: float = 1_700_000_000.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_interests <= self.max_interests <= self.n_categories:
            raise ValueError("need 1 <= min_interests <= max_interests <= n_categories")
        if self.n_items < self.n_categories:
            raise ValueError("need at least one item per category")
        if self.n_users < 1 or self.clicks_per_user < 1:
            raise ValueError("n_users and clicks_per_user must be positive")


def item_id(i: int) -> str:
    return f"i{i}"


def category_id(c: int) -> str:
    return f"c{c}"


def user_id(u: int) -> str:
    return f"u{u}"


class ClickSimulator:
    """The catalog (item -> category) and the users' latent interests, fixed by the seed."""

    def __init__(self, cfg: SimConfig = SimConfig()) -> None:
        self.cfg = cfg
        rng = np.random.default_rng([cfg.seed, 0])
        # Items are dealt to categories at random so that ids carry no category information.
        cats = np.arange(cfg.n_items) % cfg.n_categories
        rng.shuffle(cats)
        self._item_cat = cats
        self._cat_items: list[np.ndarray] = []
        self._cat_cdf: list[np.ndarray] = []
        # One stable sort instead of a scan per category: a 1M-item catalog is built in a second.
        order = np.argsort(cats, kind="stable")
        bounds = np.searchsorted(cats[order], np.arange(cfg.n_categories + 1))
        for c in range(cfg.n_categories):
            members = order[bounds[c]:bounds[c + 1]].copy()
            rng.shuffle(members)  # popularity rank within the category
            cdf = np.cumsum(1.0 / np.arange(1, len(members) + 1) ** cfg.zipf_a)
            self._cat_items.append(members)
            self._cat_cdf.append(cdf / cdf[-1])

    def item_category(self, item: int) -> int:
        return int(self._item_cat[item])

    def user_interests(self, u: int) -> list[int]:
        """The latent interest categories of user number `u` (the ground truth for tests)."""
        return self._user_plan(u)[1]

    def _user_plan(self, u: int) -> tuple[np.random.Generator, list[int], int]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 1, u])
        k = int(rng.integers(cfg.min_interests, cfg.max_interests + 1))
        interests = [int(c) for c in rng.choice(cfg.n_categories, size=k, replace=False)]
        n_clicks = max(4, int(rng.poisson(cfg.clicks_per_user)))
        return rng, interests, n_clicks

    def user_events(self, u: int) -> Iterator[dict]:
        """User `u`'s clicks in time order."""
        cfg = self.cfg
        rng, interests, n_clicks = self._user_plan(u)
        ts = cfg.start_ts + float(rng.exponential(cfg.mean_gap_s))
        current = int(rng.integers(len(interests)))
        for n in range(n_clicks):
            if rng.random() < cfg.p_off_interest:
                cat = int(rng.integers(cfg.n_categories))
            else:
                if n and rng.random() < cfg.p_switch and len(interests) > 1:
                    current = (current + int(rng.integers(1, len(interests)))) % len(interests)
                cat = interests[current]
            cdf = self._cat_cdf[cat]
            item = int(self._cat_items[cat][min(int(np.searchsorted(cdf, rng.random())), len(cdf) - 1)])
            yield {
                "event_id": f"sim-{cfg.seed}-{u}-{n}",
                "user_id": user_id(u),
                "item_id": item_id(item),
                "ts": round(ts, 3),
                "category": category_id(cat),
            }
            ts += float(rng.exponential(cfg.mean_gap_s))

    def events(self, users: int | None = None) -> Iterator[dict]:
        """All clicks of the first `users` users (default all), merged in global time order."""
        n = self.cfg.n_users if users is None else min(users, self.cfg.n_users)
        return heapq.merge(*(self.user_events(u) for u in range(n)), key=lambda e: (e["ts"], e["event_id"]))

    def expected_events(self, users: int | None = None) -> int:
        n = self.cfg.n_users if users is None else min(users, self.cfg.n_users)
        return sum(self._user_plan(u)[2] for u in range(n))


def write_jsonl(events: Iterator[dict], path: Path, total: int | None = None, progress: bool = True) -> int:
    """Write events one JSON object a line; returns the number written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        with Progress(f"writing {path.name}", total=total, unit="ev", enabled=progress) as bar:
            for e in events:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
                n += 1
                bar.update()
    return n


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    """The simulator's knobs, shared by `simulate` and `produce --simulate`."""
    d = SimConfig()
    env = os.environ.get
    p.add_argument("--sim-users", type=int, default=int(env("MINDSTREAM_SIM_USERS", d.n_users)),
                   help="simulated users (env MINDSTREAM_SIM_USERS; default %(default)s)")
    p.add_argument("--sim-items", type=int, default=int(env("MINDSTREAM_SIM_ITEMS", d.n_items)),
                   help="catalog size (env MINDSTREAM_SIM_ITEMS; default %(default)s)")
    p.add_argument("--sim-categories", type=int, default=int(env("MINDSTREAM_SIM_CATEGORIES", d.n_categories)),
                   help="item categories (env MINDSTREAM_SIM_CATEGORIES; default %(default)s)")
    p.add_argument("--sim-clicks-per-user", type=int, default=int(env("MINDSTREAM_SIM_CLICKS", d.clicks_per_user)),
                   help="mean clicks per user (env MINDSTREAM_SIM_CLICKS; default %(default)s)")
    p.add_argument("--seed", type=int, default=int(env("MINDSTREAM_SIM_SEED", d.seed)),
                   help="random seed (env MINDSTREAM_SIM_SEED; default %(default)s)")


def sim_config_from(args: argparse.Namespace) -> SimConfig:
    return SimConfig(n_users=args.sim_users, n_items=args.sim_items, n_categories=args.sim_categories,
                     clicks_per_user=args.sim_clicks_per_user, seed=args.seed)


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Write a seeded synthetic multi-interest click stream as JSONL (clicks topic fields), "
                     "a dataset for `mindstream train --data` and `mindstream produce --data`.")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("MINDSTREAM_SIM_OUT", "runs/sim/clicks.jsonl")),
                   help="output JSONL file (env MINDSTREAM_SIM_OUT; default %(default)s)")
    add_sim_arguments(p)


def run(args: argparse.Namespace) -> int:
    from stream.errors import CommandError

    try:
        cfg = sim_config_from(args)
    except ValueError as e:  # simulator settings out of range
        raise CommandError(str(e)) from e
    sim = ClickSimulator(cfg)
    n = write_jsonl(sim.events(), args.out, total=sim.expected_events())
    print(f"wrote {n} clicks of {cfg.n_users} users over {cfg.n_items} items in {cfg.n_categories} categories "
          f"to {args.out}  (config {json.dumps(asdict(cfg))})")
    return 0
