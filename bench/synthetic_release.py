"""A model release over a synthetic catalog of N items (default 1,000,000), for the streaming benchmark.

    .venv/bin/python -m bench.synthetic_release --out runs/bench/models-1m [--items 1000000]

The catalog is the simulator's (stream/commands/simulate.py: item `i<n>` in category `c<m>`), so simulated
clicks hit known items. The tower is a MIND of the served shape (d=64, K=4, max_len=50), trained briefly
(`train_briefly`: TRAIN_EPOCHS passes of sampled softmax over TRAIN_USERS simulated users' clicks, users
numbered from FIRST_TRAIN_USER on, so the users the ef is chosen on and bench/ann.py measures, numbers 0..999,
are not among them). Why trained: an untrained tower's interests are generic directions, the top 100 of a
million scores is then a flat tail over several categories decided by random 64-d id vectors, which no trained
catalog looks like and which no graph index finds (recall@100 0.79 at ef 1600 even with the lifted index,
docs/benchmarks/ann.md). Trained, interests point at the categories a user clicks and the scores of an interest's
top items stand out of the rest, as in a real release. Items no training user clicked (most of the long tail)
keep their random id vectors, averaged with their category's trained one, as an item seen once would.
The release goes through model/release.py's writer (its index, its ef check on the simulator's first users), so
the worker loads and verifies it like any other; training and the 1M-item hnswlib index dominate the time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model.ann import MAX_USERS, EfCheck, head_size
from model.data import Vocab
from model.mind import MIND, MINDConfig
from model.release import FORMAT, ReleaseError, current_release_dir, load_release, write_release
from model.train import TrainConfig, torch_threads
from stream.commands.simulate import ClickSimulator, SimConfig, category_id, item_id

FIRST_TRAIN_USER = 1_000  # the simulator's users 0..999 are the measured ones (the ef check, bench/ann.py)
TRAIN_USERS = 20_000
TRAIN_EPOCHS = 2
BATCH = 256


def sim_config(n_items: int, n_categories: int, n_users: int = 20_000, seed: int = 0) -> SimConfig:
    """The simulator whose catalog the synthetic release serves."""
    return SimConfig(n_users=n_users, n_items=n_items, n_categories=n_categories, clicks_per_user=30, seed=seed)


def version_of(n_items: int, seed: int = 0) -> str:
    """The version (directory name) of the synthetic release of this size, seed, release format and exact head
    (model/ann.py): a release written by an older writer stays beside the new one instead of blocking its name."""
    return f"synthetic-{n_items}-s{seed}-f{FORMAT}-head{head_size(n_items)}"


def simulated_histories(n_items: int, n_categories: int, n_users: int, seed: int = 0) -> dict[str, list[str]]:
    """The simulator's first `n_users` users on this catalog: user id -> item ids clicked, oldest first."""
    histories: dict[str, list[str]] = {}
    for e in ClickSimulator(sim_config(n_items, n_categories, n_users=n_users, seed=seed)).events():
        histories.setdefault(e["user_id"], []).append(e["item_id"])
    return histories


def build(out: Path, n_items: int, n_categories: int, seed: int = 0, make_current: bool = True,
          train_users: int = TRAIN_USERS) -> Path:
    """Write the release under `out` (made CURRENT unless `make_current` is false), its tower trained on
    `train_users` simulated users; returns its directory."""
    sim = ClickSimulator(sim_config(n_items, n_categories, seed=seed))
    cats = np.asarray([sim.item_category(i) for i in range(n_items)], dtype=np.int64) + 1
    vocab = Vocab(
        item_ids=[item_id(i) for i in range(n_items)],
        categories=[category_id(c) for c in range(n_categories)],
        item_category_lists=[[]] + [[int(c)] for c in cats],
        profile_fields={},
    )
    model, trained = train_briefly(n_items, n_categories, cats, seed, train_users)
    summary = {"name": f"synthetic-{n_items}", "items": n_items, "categories": n_categories, **trained,
               "note": "MIND trained briefly on the simulator's clicks (bench/synthetic_release.py)"}
    # the ef is chosen as a trained release's is (model/release.py), on the simulator's users: their newest
    # max_len clicks, left-padded tower indices
    max_len = model.cfg.max_len
    histories = list(simulated_histories(n_items, n_categories, MAX_USERS, seed).values())
    items = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, h in enumerate(histories):
        idx = [vocab.item_index[i] for i in h][-max_len:]
        items[row, max_len - len(idx):] = idx
    check = EfCheck(items, np.zeros((len(histories), 0), dtype=np.int64), TrainConfig().ann_recall)
    return write_release(model, vocab, out, data_summary=summary, metrics={}, train_config={},
                         version=version_of(n_items, seed), make_current=make_current, ef_check=check)


def train_briefly(n_items: int, n_categories: int, cats: np.ndarray, seed: int = 0,
                  train_users: int = TRAIN_USERS) -> tuple[MIND, dict]:
    """A MIND over the catalog (`cats`: each item's 1-based category), trained TRAIN_EPOCHS passes on the next-click
    samples of the simulator's `train_users` users from FIRST_TRAIN_USER on; returns it and a summary. model/train.py's
    `fit` is not used: it validates each epoch by scoring the whole catalog for every user, hours at 1M items.
    The id embeddings are sparse (SparseAdam): a batch touches a few thousand of the million rows."""
    sim = ClickSimulator(sim_config(n_items, n_categories, n_users=FIRST_TRAIN_USER + train_users, seed=seed))
    max_len = MINDConfig().max_len
    rows, targets = [], []
    for u in range(FIRST_TRAIN_USER, FIRST_TRAIN_USER + train_users):
        h = [int(e["item_id"][1:]) + 1 for e in sim.user_events(u)]  # tower indices: item i<n> is n + 1
        for t in range(1, len(h)):
            rows.append(h[max(0, t - max_len):t])
            targets.append(h[t])
    items = torch.zeros(len(rows), max_len, dtype=torch.long)
    for r, row in enumerate(rows):
        items[r, max_len - len(row):] = torch.as_tensor(row)
    target = torch.as_tensor(targets)
    freq = torch.zeros(n_items + 1).index_add_(0, target, torch.ones(len(target)))
    torch.manual_seed(seed)
    item_categories = torch.zeros(n_items + 1, 1, dtype=torch.long)
    item_categories[1:, 0] = torch.as_tensor(cats)
    model = MIND(MINDConfig(), n_items, item_categories=item_categories, n_categories=n_categories, item_freq=freq)
    ids = model.embedding.id_emb
    ids.sparse = True
    opts = [torch.optim.SparseAdam([ids.weight], lr=TrainConfig().lr),
            torch.optim.Adam([p for p in model.parameters() if p is not ids.weight], lr=TrainConfig().lr)]
    profile = torch.zeros(BATCH, 0, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    t0, loss = time.perf_counter(), torch.zeros(())
    # one thread: the machine's other core serves; two torch threads on two busy cores spin
    with torch_threads(1):
        model.train()
        for _ in range(TRAIN_EPOCHS):
            perm = torch.randperm(len(target), generator=gen)
            for s in range(0, len(perm) - BATCH + 1, BATCH):
                idx = perm[s:s + BATCH]
                loss = model.loss(items[idx], profile, target[idx])
                for o in opts:
                    o.zero_grad()
                loss.backward()
                for o in opts:
                    o.step()
    ids.sparse = False
    model.eval()
    return model, {"users": train_users, "interactions": int(len(target)) + train_users,
                   "train_samples": int(len(target)), "train_epochs": TRAIN_EPOCHS,
                   "items_clicked": int((freq > 0).sum()), "final_loss": round(loss.item(), 4),
                   "train_seconds": round(time.perf_counter() - t0, 1)}


def ensure(out: Path, n_items: int, n_categories: int, seed: int = 0) -> Path:
    """The release under `out` if the current one is this writer's (`version_of`) and verifies, else a new one."""
    try:
        path = current_release_dir(out)
        if path.name == version_of(n_items, seed) and load_release(path).manifest["item_count"] == n_items:
            return path
    except ReleaseError:
        pass
    return build(out, n_items, n_categories, seed)


def ensure_version(out: Path, n_items: int, n_categories: int, seed: int) -> Path:
    """The release of this size and seed under `out` if it is there and verifies, else a new one; CURRENT is
    left as it is (bench/hotswap.py keeps two seeds side by side: the served release and the one announced)."""
    path = out / version_of(n_items, seed)
    if path.exists():
        load_release(path)  # ReleaseError: a damaged release is not silently rebuilt over
        return path
    return build(out, n_items, n_categories, seed, make_current=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench/models-1m"), help="release root (default %(default)s)")
    p.add_argument("--items", type=int, default=1_000_000, help="catalog size (default %(default)s)")
    p.add_argument("--categories", type=int, default=1000, help="categories (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    args = p.parse_args()
    t = time.perf_counter()
    path = ensure(args.out, args.items, args.categories, args.seed)
    print(f"release {path} ready ({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
