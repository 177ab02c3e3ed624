"""ANN quality against cost: recall@100 of the served candidate list against exact search, per query-time ef.

    .venv/bin/python -m bench.ann [--users 1000] [--ef 50,100,150,200,400] [--target 0.95]

Two indexes: the Beauty release (bench/stream.py `beauty_release`: trained with a small budget, reused when
there) and the 1,000,000-item synthetic release (bench/synthetic_release.py: trained briefly on the simulator's
users from 1,000 on). Real users' interests: the release's ONNX user tower on users' histories (Beauty: a fixed
sample of the dataset's users, their newest max_len items; 1M: the simulator's first users on that catalog, not
trained on), K'u interests each, as the worker keeps them. Both indexes are the releases' own (model/ann.py
`build_index`: vectors lifted to one norm, hnswlib 'ip', M and ef_construction of model/release.py).

Per index and ef: the candidate list is `recall_batch`'s (stream/worker/recall.py: one hnswlib search per
interest, max over interests, the history removed), one user per call; the truth is the exact list
(model/ann.py `exact`: embeddings @ interests.T, max over the user's interests, history removed, top 100).
recall@100 = mean share of the exact list the served one holds. Cost = the call's time / the user's interest
count, median over users (one thread, after a warm-up). The shipped ef is the one the release's manifest names.

Writes docs/benchmarks/ann.json, ann.md and ann.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench import synthetic_release
from bench.stream import BEAUTY, WORK, add_report_flags, beauty_release, machine_conditions, write_report
from model import ann
from model.data import load_dataset
from model.release import HNSW_EF_SEARCH, Release, load_release
from model.train import TrainConfig
from stream.worker.recall import recall_batch

EFS = (50, 100, 150, 200, 400)  # measured by default, beside the ef each release ships
WARMUP = 20  # users searched before the timed ones, per ef
INDEXES = {"beauty": "Beauty", "1m_items": "synthetic"}


def beauty_users(n: int) -> list[tuple[str, list[str], dict]]:
    """A fixed sample of `n` Beauty users: (user, items oldest first, profile)."""
    data = load_dataset(BEAUTY)
    users = sorted(data.sequences)
    pick = np.random.default_rng(0).choice(len(users), min(n, len(users)), replace=False)
    return [(users[i], list(data.sequences[users[i]]), data.user_profile.get(users[i]) or {}) for i in sorted(pick)]


def simulated_users(n_items: int, n: int) -> list[tuple[str, list[str], dict]]:
    """The simulator's first `n` users on the synthetic catalog: (user, items oldest first, {})."""
    return [(u, items, {}) for u, items in synthetic_release.simulated_histories(n_items, 1000, n).items()]


def interests_of(release: Release, users: list[tuple[str, list[str], dict]]
                 ) -> list[tuple[np.ndarray, list[str], np.ndarray]]:
    """Per user: (K'u interests from the release's tower, history as the worker keeps it, its labels). A user none
    of whose items the release knows is left out, as the worker leaves it."""
    users = [u for u in users if any(release.knows(i) for i in u[1][-release.max_len:])]
    out = []
    for start in range(0, len(users), 256):
        chunk = users[start:start + 256]
        histories = [items[-release.max_len:] for _, items, _ in chunk]
        encoded = [release.encode_behaviors(h) for h in histories]
        interests, n = release.tower(np.stack([b for b, _ in encoded]), np.stack([m for _, m in encoded]),
                                     np.stack([release.encode_profile(p) for _, _, p in chunk]))
        for row, h in enumerate(histories):
            seen = np.asarray([lab for lab in map(release.label, set(h)) if lab is not None], dtype=np.int64)
            out.append((ann.kept_interests(interests[row], n[row]), h, seen))
    return out


def shipped_ef(release: Release) -> tuple[int, str]:
    """The ef the worker searches this release with, and where it comes from."""
    hnsw = release.manifest.get("hnsw", {})
    if "recall_by_ef" in hnsw:
        if hnsw.get("recall_target_reached", True):
            return int(hnsw["ef_search"]), f"chosen when written, for recall >= {hnsw['recall_target']}"
        return int(hnsw["ef_search"]), (f"the default: no ef up to {max(map(int, hnsw['recall_by_ef']))} reached "
                                        f"recall {hnsw['recall_target']} when the release was written")
    return int(hnsw.get("ef_search", HNSW_EF_SEARCH)), "the default (a release written without an ef check)"


def measure_index(name: str, release: Release, users: list, efs: list[int], top_n: int) -> dict:
    queries = interests_of(release, users)
    if not queries:
        raise SystemExit(f"[{name}] no user of the sample has an item release {release.version} knows")
    t = time.perf_counter()
    truth = [ann.exact(release.embeddings, q, seen, top_n) for q, _, seen in queries]
    print(f"[{name}] {len(queries)} users, {sum(len(q) for q, _, _ in queries)} interests; exact lists in "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    ef0, source = shipped_ef(release)
    shipped_head, no_head = release.head, ann.ExactHead.of(release.embeddings, 0)
    rows = []
    for ef in sorted(set(efs) | {ef0}):
        release.index.set_ef(ef)
        row = {"ef": ef}
        # the ablation: the same searches without the exact head (the graph alone, as before 2026-12-03)
        for suffix, head in (("", shipped_head), ("_graph_only", no_head)):
            release.head = head
            recall_at, ms_interest, ms_user = served(release, queries, truth, top_n)
            row.update({f"recall_at_100{suffix}": recall_at, f"ms_per_interest_p50{suffix}": ms_interest,
                        f"ms_per_user_p50{suffix}": ms_user})
        release.head = shipped_head
        rows.append(row)
        print(f"[{name}] ef {ef:>4}: recall@{top_n} {row['recall_at_100']:.4f}, "
              f"{row['ms_per_interest_p50']:.3f} ms per interest (median); the graph alone "
              f"{row['recall_at_100_graph_only']:.4f}, {row['ms_per_interest_p50_graph_only']:.3f} ms", flush=True)
    release.index.set_ef(ef0)
    return {"release": release.version, "path": str(release.path), "items": len(release.item_ids),
            "users": len(queries), "interests": sum(len(q) for q, _, _ in queries),
            "mean_history": round(float(np.mean([len(h) for _, h, _ in queries])), 1),
            "shipped_ef": ef0, "shipped_ef_source": source,
            "shipped_recall_at_100": next(r["recall_at_100"] for r in rows if r["ef"] == ef0),
            "manifest_hnsw": release.manifest.get("hnsw", {}), "per_ef": rows}


def served(release: Release, queries: list, truth: list[np.ndarray], top_n: int) -> tuple[float, float, float]:
    """recall@top_n of the lists `recall_batch` serves at the index's current ef, and the median ms per interest
    and per user (one user per call, after WARMUP users)."""
    for q, h, _ in queries[:WARMUP]:
        recall_batch(release, [(q, h)], top_n)
    got, ms_interest, ms_user = [], [], []
    for q, h, _ in queries:
        t = time.perf_counter()
        cands = recall_batch(release, [(q, h)], top_n)[0]
        dt = (time.perf_counter() - t) * 1000.0
        got.append(np.asarray([release.label(c["item_id"]) for c in cands], dtype=np.int64))
        ms_user.append(dt)
        ms_interest.append(dt / len(q))
    return (round(ann.recall(got, truth), 4), round(statistics.median(ms_interest), 4),
            round(statistics.median(ms_user), 4))


def smallest_reaching(index: dict, target: float) -> int | None:
    """The smallest ef measured (the sweep's and the shipped one) whose recall@100 reaches `target`."""
    reached = [r["ef"] for r in index["per_ef"] if r["recall_at_100"] >= target]
    return min(reached) if reached else None


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, label in INDEXES.items():
        rows = result["indexes"][name]["per_ef"]
        x, y = [r["ms_per_interest_p50"] for r in rows], [r["recall_at_100"] for r in rows]
        line, = ax.plot(x, y, marker="o", label=f"{label} ({result['indexes'][name]['items']:,} items)")
        ax.plot([r["ms_per_interest_p50_graph_only"] for r in rows], [r["recall_at_100_graph_only"] for r in rows],
                marker=".", linestyle="--", color=line.get_color(), alpha=0.6, label=f"{label}, graph alone")
        for r in rows:
            ax.annotate(f"ef {r['ef']}", (r["ms_per_interest_p50"], r["recall_at_100"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)
    ax.axhline(result["target"], color="grey", linestyle="--", linewidth=1, label=f"target {result['target']}")
    ax.set_xlabel("ms per interest (median; one hnswlib search + the merge, one thread)")
    ax.set_ylabel("recall@100 against exact search")
    ax.set_title("ANN quality against cost (python -m bench.ann)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render_markdown(r: dict) -> str:
    c = r["conditions"]
    lines = ["# ANN quality against cost: recall@100 of the candidate list per hnswlib ef", "",
             f"Generated by `{c['command']}` on {c['date_utc']} UTC; raw figures in `ann.json`, the curve in "
             "`ann.png`.", "",
             "As served (the graph and the exact head), and the ablation: the graph alone.", "",
             "| index | ef | recall@100 | ms per interest (p50) | ms per user (p50) | graph alone: recall@100 | "
             "ms per interest |", "|---|---|---|---|---|---|---|"]
    for name, label in INDEXES.items():
        idx = r["indexes"][name]
        for row in idx["per_ef"]:
            mark = " (shipped)" if row["ef"] == idx["shipped_ef"] else ""
            lines.append(f"| {label} ({idx['items']:,} items) | {row['ef']}{mark} | {row['recall_at_100']:.4f} | "
                         f"{row['ms_per_interest_p50']:.3f} | {row['ms_per_user_p50']:.3f} | "
                         f"{row['recall_at_100_graph_only']:.4f} | {row['ms_per_interest_p50_graph_only']:.3f} |")
    lines += ["", f"Target recall@100 >= {r['target']}. At the shipped ef:", ""]
    for name, label in INDEXES.items():
        idx = r["indexes"][name]
        smallest = r["smallest_ef_reaching_target"][name]
        h = idx["manifest_hnsw"]
        lines.append(f"- {label} ({idx['items']:,} items): release `{idx['release']}` (M {h.get('M')}, "
                     f"ef_construction {h.get('ef_construction')}, exact head {h.get('exact_head', 0):,} "
                     f"items), ef {idx['shipped_ef']} "
                     f"({idx['shipped_ef_source']}), "
                     f"recall@100 {idx['shipped_recall_at_100']:.4f} on {idx['users']:,} users "
                     f"({idx['interests']:,} interests, mean history {idx['mean_history']} items); the smallest "
                     f"measured ef reaching the target here: {smallest if smallest is not None else 'none'}.")
    lines += [
        "", "![recall@100 against ms per interest](ann.png)", "", "## How it was measured", "",
        f"- `{c['command']}` on {c['cores']} cores ({c['cpu']}); one thread (the worker's event loop searches "
        "with `num_threads=1`). Conditions: " + f"{c['load_note']}; 1-minute load average "
        f"{c['loadavg_1min_before_after'][0]} before, {c['loadavg_1min_before_after'][1]} after.",
        "- Interests: the release's ONNX user tower (`Release.tower`) on each user's newest max_len items, K'u "
        "interests kept (`kept_interests`). Beauty: a fixed random sample of the dataset's users; 1M items: the "
        "simulator's first users on the synthetic catalog (bench/synthetic_release.py `sim_config`), whose tower "
        f"was trained on the simulator's users from {synthetic_release.FIRST_TRAIN_USER:,} on.",
        "- Index: the release's `items.hnsw`, hnswlib space 'ip' over the item vectors lifted to one norm "
        "(model/ann.py `build_index`), M and ef_construction as the manifest's `hnsw` says (above).",
        "- Served list: `recall_batch` (stream/worker/recall.py), one user per call: each interest searched with "
        "k = 100 + the history's length, in the graph and in the release's exact head (model/ann.py `ExactHead`: "
        "the manifest's `hnsw.exact_head` longest item vectors, scored by a full inner product), max over "
        "interests, history removed, top 100. hnswlib searches with max(ef, k), so an ef below k costs and finds "
        "what ef = k does. *Graph alone*: the same calls with an empty head.",
        "- Exact list: numpy, `item_embeddings @ interests.T`, max over the user's interests, history removed, "
        "top 100 (model/ann.py `exact`). recall@100: mean over users of the share of the exact list served.",
        "- Cost: wall time of the `recall_batch` call divided by the user's interest count, median over users, after "
        f"{WARMUP} warm-up users per ef.",
        "- The release chooses its ef when it is written (model/release.py, `mindstream train --ann-recall`): the "
        f"smallest of {', '.join(map(str, ann.EFS))} whose recall@100 on up to {ann.MAX_USERS} validation users "
        "reaches the target (200, flagged `recall_target_reached: false`, when none does), "
        "stored as the manifest's `hnsw.ef_search` (measured from the smallest ef up, stopping at the first that "
        "reaches the target); the worker searches with it.", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000, help="users per index (default %(default)s)")
    p.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",") if x.strip()], default=list(EFS),
                   help="query-time ef values, comma separated; each release's shipped ef is measured too "
                   f"(default {','.join(map(str, EFS))})")
    p.add_argument("--target", type=float, default=TrainConfig().ann_recall,
                   help="recall@100 target, `mindstream train --ann-recall`'s default (default %(default)s)")
    p.add_argument("--beauty-models", type=Path, default=WORK / "models-beauty",
                   help="Beauty release root, trained there when none verifies (default %(default)s)")
    p.add_argument("--beauty-epochs", type=int, default=1, help="epochs when it is trained (default %(default)s)")
    p.add_argument("--m1-models", type=Path, default=WORK / "models-1m",
                   help="1M-item release root, built there when none verifies (default %(default)s)")
    p.add_argument("--items", type=int, default=1_000_000, help="synthetic catalog size (default %(default)s)")
    add_report_flags(p)
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    top_n = ann.TOP_N

    t = time.perf_counter()
    beauty = load_release(beauty_release(args.beauty_models, args.beauty_epochs))
    print(f"[beauty] release {beauty.version} ({len(beauty.item_ids):,} items) ready in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    indexes = {"beauty": measure_index("beauty", beauty, beauty_users(args.users), args.ef, top_n)}
    del beauty
    t = time.perf_counter()
    m1 = load_release(synthetic_release.ensure(args.m1_models, args.items, 1000))
    print(f"[1m_items] release {m1.version} ({len(m1.item_ids):,} items) ready in {time.perf_counter() - t:.0f} s",
          flush=True)
    indexes["1m_items"] = measure_index("1m_items", m1, simulated_users(args.items, args.users), args.ef, top_n)

    result = {
        "ann_ef": indexes["1m_items"]["shipped_ef"],
        "ann_recall_at_100_1m_items": indexes["1m_items"]["shipped_recall_at_100"],
        "ann_ef_beauty": indexes["beauty"]["shipped_ef"],
        "ann_recall_at_100_beauty": indexes["beauty"]["shipped_recall_at_100"],
        "target": args.target,
        "smallest_ef_reaching_target": {n: smallest_reaching(i, args.target) for n, i in indexes.items()},
        "indexes": indexes,
        "conditions": {"command": " ".join(["python -m bench.ann", *sys.argv[1:]]), "users": args.users,
                       "efs": args.ef, "top_n": top_n, **machine_conditions(load_before, args.load_note)},
    }
    for name, idx in indexes.items():
        print(f"{name}: shipped ef {idx['shipped_ef']} -> recall@100 {idx['shipped_recall_at_100']:.4f}; smallest "
              f"ef reaching {args.target}: {result['smallest_ef_reaching_target'][name]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ann.json").write_text(json.dumps(result, indent=2) + "\n")
    write_report(args.out / "ann.md", render_markdown(result))
    plot(result, args.out / "ann.png")
    print(f"wrote {args.out / 'ann.json'}, ann.md and ann.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
