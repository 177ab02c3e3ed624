"""Offline HR@50 on test targets that are items unseen in training, with and without the category vector.

    nice -n 5 .venv/bin/python -m bench.new_items_offline [--out docs/results/new_items.json]

Protocol: leave-one-out (model/data.py), every item ranked. A set NEW of items is unseen in training: their
clicks are removed from every user's sequence except where one is the user's test target (the last click), so
they are in the vocabulary but never trained (`seen` is false: MIND's embedding layer gives them their category
mean, model/mind.py ItemEmbedding). Test users are reported in two groups: new-item targets and warm targets.
"Without" the category vector, a NEW item is represented by its id embedding, never trained (what a model
without side features has for it; today's serving, which does not index it at all, has HR = 0 by definition).

Splits:
* ml-100k late: NEW = items first rated in the last 20 % of the log's time span (the natural new items);
* ml-100k random: NEW = a seeded 10 % of the items (cold-start protocol, more targets);
* simulator: stream/commands/simulate.py; a seeded 10 % of the items arrive mid-stream (no click before the median ts).

For ml-100k the category vector is the mean of the item's genres (the embedding layer's), and, as serving has
it (one `category` per click or `items` record), its first genre only. Variants: `id_dropout` 0 (the default)
and the DropoutNet option. One seed, CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model.data import Interactions, Vocab, leave_one_out, load_dataset
from model.metrics import evaluate_scorer
from model.mind import MINDConfig
from model.train import TrainConfig, build_model, fit, seed_everything
from stream.commands.simulate import ClickSimulator, SimConfig

ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"
MODEL = MINDConfig(d=32, K=4, max_len=20, hidden=(64,), profile_dim=8)
TRAIN = TrainConfig(epochs=10, batch_size=512, patience=2, threads=1, progress=False)
SIM = SimConfig(n_users=3000, n_items=3000, n_categories=30, clicks_per_user=30, seed=7)


def ml100k_late(share: float = 0.2) -> tuple[Interactions, set[str], dict]:
    data = load_dataset(ML100K)
    first: dict[str, float] = {}
    stamps = []
    with open(ML100K / "ml-100k.inter", encoding="utf-8") as f:
        next(f)
        for line in f:
            _, item, _, ts = line.rstrip("\n").split("\t")
            first[item] = min(first.get(item, float(ts)), float(ts))
            stamps.append(float(ts))
    cut = min(stamps) + (1 - share) * (max(stamps) - min(stamps))
    return data, {i for i, t in first.items() if t >= cut}, {"rule": f"first rating in the last {share:.0%} of time"}


def random_share(data: Interactions, share: float, seed: int) -> set[str]:
    items = sorted({i for s in data.sequences.values() for i in s})
    rng = np.random.default_rng(seed)
    return set(rng.choice(items, size=int(round(share * len(items))), replace=False).tolist())


def ml100k_random(share: float = 0.1) -> tuple[Interactions, set[str], dict]:
    data = load_dataset(ML100K)
    return data, random_share(data, share, 0), {"rule": f"a seeded {share:.0%} of the items"}


def simulator(share: float = 0.1) -> tuple[Interactions, set[str], dict]:
    sim = ClickSimulator(SIM)
    events = list(sim.events())
    items = {e["item_id"] for e in events}
    new = set(np.random.default_rng(0).choice(sorted(items), size=int(share * len(items)), replace=False).tolist())
    arrival = float(np.median([e["ts"] for e in events]))
    sequences: dict[str, list[str]] = {}
    categories: dict[str, list[str]] = {}
    for e in events:  # global time order; a new item has no click before it arrives
        categories.setdefault(e["item_id"], [e["category"]])
        if e["item_id"] in new and e["ts"] < arrival:
            continue
        sequences.setdefault(e["user_id"], []).append(e["item_id"])
    return (Interactions(sequences, categories, {}, "simulator"), new,
            {"rule": f"a seeded {share:.0%} of the items arrive at the median ts", "sim": dataclasses.asdict(SIM)})


def held_out(data: Interactions, new: set[str]) -> Interactions:
    """NEW items only as test targets: removed from every other position of every sequence (and from the end of
    a sequence too short to be evaluated, whose items would all train)."""
    seqs = {}
    for u, s in data.sequences.items():
        kept = [i for i in s[:-1] if i not in new]
        seqs[u] = kept + s[-1:] if s[-1] not in new or len(kept) >= 2 else kept
    return Interactions({u: s for u, s in seqs.items() if s}, data.item_categories, data.user_profile, data.name)


def first_genre_only(data: Interactions, new: set[str]) -> Interactions:
    cats = {i: (c[:1] if i in new else c) for i, c in data.item_categories.items()}
    return Interactions(data.sequences, cats, data.user_profile, data.name)


def evaluate_groups(model, split, new_idx: np.ndarray) -> dict[str, dict]:
    model.eval()

    @torch.no_grad()
    def score(items: np.ndarray, profile: np.ndarray) -> torch.Tensor:
        return model.score_all(torch.as_tensor(items), torch.as_tensor(profile))

    is_new = np.isin(split.test_target, new_idx)
    out = {}
    for name, rows in (("new", is_new), ("warm", ~is_new)):
        out[name] = evaluate_scorer(score, split.test_items[rows], split.profile[rows], split.test_target[rows],
                                    split.test_exclude[rows])
        out[name]["targets"] = int(rows.sum())
    return out


def without_category(model, new_idx: np.ndarray) -> None:
    """NEW items represented by their (never trained) id embedding alone."""
    with torch.no_grad():
        model.embedding.item_categories[torch.as_tensor(new_idx)] = 0
        model.embedding.seen[torch.as_tensor(new_idx)] = True


def run_split(name: str, data: Interactions, new: set[str], id_dropouts: list[float], first_genre: bool) -> dict:
    vocab = Vocab.build(data)  # every item, NEW ones included (the catalog knows them)
    split = leave_one_out(held_out(data, new), vocab, MODEL.max_len)
    new_idx = np.asarray(sorted(vocab.item_index[i] for i in new if i in vocab.item_index), dtype=np.int64)
    result: dict = {"new_items": len(new_idx), "test_users": len(split.users), "runs": {}}
    for p in id_dropouts:
        cfg = dataclasses.replace(MODEL, id_dropout=p)
        seed_everything(TRAIN.seed)
        model = build_model("mind", cfg, split)
        t = time.perf_counter()
        fitted = fit(model, split, TRAIN)
        model.load_state_dict(fitted.state_dict)
        run = {"train_s": round(time.perf_counter() - t, 1), "best_epoch": fitted.best_epoch,
               "with_category": evaluate_groups(model, split, new_idx)}
        if first_genre:
            one = Vocab.build(first_genre_only(data, new))
            with torch.no_grad():
                model.embedding.item_categories.copy_(torch.as_tensor(pad_to(one.item_category_matrix(),
                                                                             model.embedding.item_categories)))
            run["first_category_only"] = evaluate_groups(model, split, new_idx)
        without_category(model, new_idx)
        run["without_category"] = evaluate_groups(model, split, new_idx)
        result["runs"][f"id_dropout={p:g}"] = run
        print(name, p, json.dumps(run), flush=True)
    return result


def pad_to(matrix: np.ndarray, like: torch.Tensor) -> np.ndarray:
    out = np.zeros(tuple(like.shape), dtype=np.int64)
    out[:, : matrix.shape[1]] = matrix[:, : like.shape[1]]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/results/new_items.json"))
    p.add_argument("--id-dropout", default="0,0.5", help="id_dropout values to train (default %(default)s)")
    p.add_argument("--splits", default="simulator,ml-100k random,ml-100k late",
                   help="comma-separated splits to run (default %(default)s)")
    args = p.parse_args()
    drops = [float(x) for x in args.id_dropout.split(",")]
    started = time.time()
    results = {}
    for name, make, first in (("simulator", simulator, False), ("ml-100k random", ml100k_random, True),
                              ("ml-100k late", ml100k_late, True)):
        if name not in args.splits.split(","):
            continue
        data, new, info = make()
        results[name] = {**info, **run_split(name, data, new, drops, first)}
        args.out.write_text(json.dumps({"results": results}, indent=2) + "\n")  # partial, should a run be stopped
    meta = {"command": f"nice -n 5 .venv/bin/python -m bench.new_items_offline --id-dropout {args.id_dropout} "
                       f"--splits '{args.splits}' --out {args.out}",
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
            "machine": f"{platform.machine()} CPU, {TRAIN.threads} training thread; shared 2-core machine loaded by "
                       "other work", "model": MODEL.to_dict(), "train": dataclasses.asdict(TRAIN),
            "seconds": round(time.time() - started)}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
