"""A model release over a synthetic catalog of N items (default 1,000,000), for the streaming benchmark.

    .venv/bin/python -m bench.synthetic_release --out runs/bench/models-1m [--items 1000000]

The catalog is the simulator's (stream/commands/simulate.py: item `i<n>` in category `c<m>`), so simulated
clicks hit known items. The tower is an untrained MIND of the served shape (d=64, K=4,
max_len=50) whose category embeddings are scaled up: item vectors then cluster by category, as a
trained model's do, which is what makes the hnswlib graph search realistic (uniformly random
vectors are the worst case for it). The release goes through model/release.py's writer, so the
worker loads and verifies it like any other; building the 1M-item hnswlib index dominates the time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model.ann import MAX_USERS, EfCheck
from model.data import Vocab
from model.mind import MIND, MINDConfig
from model.release import ReleaseError, current_release_dir, load_release, write_release
from model.train import TrainConfig
from stream.commands.simulate import ClickSimulator, SimConfig, category_id, item_id

# category vectors this many times the id vectors' scale: items cluster by category
CATEGORY_SCALE = 3.0


def sim_config(n_items: int, n_categories: int, n_users: int = 20_000, seed: int = 0) -> SimConfig:
    """The simulator whose catalog the synthetic release serves."""
    return SimConfig(n_users=n_users, n_items=n_items, n_categories=n_categories, clicks_per_user=30, seed=seed)


def version_of(n_items: int, seed: int = 0) -> str:
    """The version (directory name) of the synthetic release of this size and seed."""
    return f"synthetic-{n_items}-s{seed}"


def simulated_histories(n_items: int, n_categories: int, n_users: int, seed: int = 0) -> dict[str, list[str]]:
    """The simulator's first `n_users` users on this catalog: user id -> item ids clicked, oldest first."""
    histories: dict[str, list[str]] = {}
    for e in ClickSimulator(sim_config(n_items, n_categories, n_users=n_users, seed=seed)).events():
        histories.setdefault(e["user_id"], []).append(e["item_id"])
    return histories


def build(out: Path, n_items: int, n_categories: int, seed: int = 0, make_current: bool = True) -> Path:
    """Write the release under `out` (made CURRENT unless `make_current` is false); returns its directory."""
    sim = ClickSimulator(sim_config(n_items, n_categories, seed=seed))
    cats = np.asarray([sim.item_category(i) for i in range(n_items)], dtype=np.int64) + 1
    vocab = Vocab(
        item_ids=[item_id(i) for i in range(n_items)],
        categories=[category_id(c) for c in range(n_categories)],
        item_category_lists=[[]] + [[int(c)] for c in cats],
        profile_fields={},
    )
    torch.manual_seed(seed)
    item_categories = torch.zeros(n_items + 1, 1, dtype=torch.long)
    item_categories[1:, 0] = torch.as_tensor(cats)
    model = MIND(MINDConfig(), n_items, item_categories=item_categories, n_categories=n_categories)
    with torch.no_grad():
        model.embedding.cat_emb.weight.mul_(CATEGORY_SCALE)
    summary = {"name": f"synthetic-{n_items}", "items": n_items, "categories": n_categories, "users": 0,
               "interactions": 0, "note": "untrained MIND over the simulator's catalog (bench/synthetic_release.py)"}
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


def ensure(out: Path, n_items: int, n_categories: int, seed: int = 0) -> Path:
    """The release under `out` if one of the right size is there and verifies, else a new one."""
    try:
        path = current_release_dir(out)
        if load_release(path).manifest["item_count"] == n_items:
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
