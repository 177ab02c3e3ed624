"""ANN quality: how much of the exact candidate list the hnswlib search finds, and the ef a release serves with.

A user's candidate list is the paper's: the top N items by the max over the user's interests of e_i . v_u^k, the
items of the user's history removed. `merge` turns one search per interest into that list (the worker publishes
what it gives, stream/worker/recall.py); `exact` computes the same list by a full inner product; `recall` is the
share of the exact list the approximate one holds. `choose_ef` is the measurement a release is written with
(model/release.py): the smallest query-time ef whose recall reaches the target on the training data's
validation users; bench/ann.py measures the same on served indexes, with the query cost of each ef.

The index a release serves (`build_index`) holds each item vector *lifted* to one common norm (`lift`: the extra
coordinate sqrt(R^2 - |e|^2), Bachrach et al., RecSys 2014), searched with the query padded by a 0 (`lift_queries`),
so hnswlib's 'ip' distance is still exactly 1 - e . v. Why: hnswlib builds its graph by the same inner product it
searches with, and an inner product between items favours the long ones, whatever their direction. An item's
neighbour list then fills with the catalog's long vectors, short items get few links in, and past some ef recall
stops growing: on the untrained 1,000,000-item synthetic release of before, recall@100 was 0.34 at ef 200 and
0.52 at 1600 over the raw vectors, 0.44 and 0.79 over lifted ones (docs/benchmarks/ann.md). With every vector of
norm R, the inner product between items is R^2 cos: the graph links items by direction, as for a metric, and the
ranking of a query is unchanged. It is not free everywhere: on Beauty, where a vector's length carries popularity,
the raw graph found a little more (0.981 against 0.968 at M 16, ef 50); both are past the target there.
"""

from __future__ import annotations

from dataclasses import dataclass

import hnswlib
import numpy as np

# The query-time ef values a release chooses from, smallest first: past 400, as a 5,000-item clustered catalog
# reaches recall 0.95 only at 800 (docs/benchmarks/ann.md has the served indexes). A search's cost grows about
# linearly with ef, so the rungs are close where the cost is large: the 1M catalog, 0.94 at 400 and 0.97 at 800,
# served 800 on the old ladder (no rung between) and serves 600 (0.956) on this one.
EFS = (50, 100, 150, 200, 300, 400, 500, 600, 800, 1200, 1600)
TOP_N = 100  # recall@TOP_N: the worker's default list length (stream/config.py top_n)
MAX_USERS = 500  # validation users measured when a release is written: a second or so, not minutes


@dataclass
class EfCheck:
    """The users a release's ef is chosen on: histories `items` [U, L] (left-padded tower indices), their
    `profile` [U, F], and the recall@TOP_N the chosen ef must reach."""

    items: np.ndarray
    profile: np.ndarray
    target: float


def radius(*vectors: np.ndarray) -> float:
    """The norm an index lifts every vector to: the largest row norm of `vectors` (the items, and the category
    vectors new items are indexed with, model/new_items.py)."""
    return float(max(np.sqrt((np.asarray(v, dtype=np.float64) ** 2).sum(axis=1)).max(initial=0.0) for v in vectors))


def lift(vectors: np.ndarray, radius: float) -> np.ndarray:
    """Rows e [n, d] -> [e, sqrt(radius^2 - |e|^2)] [n, d + 1] float32: all of norm `radius`, and e . v unchanged
    for a query lifted by `lift_queries`. A row longer than `radius` has no such lift: ValueError."""
    v = np.asarray(vectors, dtype=np.float64).reshape(-1, np.shape(vectors)[-1])
    sq = (v ** 2).sum(axis=1)
    if (sq > radius ** 2 * (1 + 1e-6)).any():
        raise ValueError(f"a vector of norm {np.sqrt(sq.max()):.4f} is longer than the index's radius {radius:.4f}")
    return np.hstack([v, np.sqrt(np.maximum(radius ** 2 - sq, 0.0))[:, None]]).astype(np.float32)


def lift_queries(queries: np.ndarray) -> np.ndarray:
    """Query rows [Q, d] -> [Q, d + 1], the extra coordinate 0."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    return np.ascontiguousarray(np.hstack([q, np.zeros((q.shape[0], 1), dtype=np.float32)]))


def build_index(vectors: np.ndarray, radius: float, M: int, ef_construction: int, seed: int = 100,
                threads: int = -1) -> hnswlib.Index:
    """An hnswlib 'ip' index of `vectors` [n, d] lifted to `radius` (dimension d + 1), labels 0..n-1, built
    with `threads` (-1: one per core)."""
    index = hnswlib.Index(space="ip", dim=vectors.shape[1] + 1)
    index.init_index(max_elements=vectors.shape[0], ef_construction=ef_construction, M=M, random_seed=seed)
    index.add_items(lift(vectors, radius), np.arange(vectors.shape[0]), num_threads=threads)
    return index


def kept_interests(interests: np.ndarray, n_interests: int) -> np.ndarray:
    """A user's K'u interests [K'u, d] out of the tower's [K, d]: its interest count, within 1..K."""
    return interests[:max(1, min(int(n_interests), interests.shape[0]))]


def search_k(n_indexed: int, top_n: int, seen: list[np.ndarray]) -> int:
    """Results asked of each interest's search: enough that `top_n` survive the history filter."""
    return min(n_indexed, top_n + max((len(s) for s in seen), default=0))


def merge(found: list[tuple[np.ndarray, np.ndarray]], seen: np.ndarray, top_n: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One user's searches, (labels, hnswlib 'ip' distances) per interest, -> (labels, scores, interest) of its
    top `top_n` items by the max over interests, labels in `seen` left out, best first. Ties go to the smaller
    label, then the smaller interest, so the order is deterministic."""
    label = np.concatenate([lab for lab, _ in found])
    score = 1.0 - np.concatenate([dist for _, dist in found])  # hnswlib 'ip' distance is 1 - dot product
    interest = np.repeat(np.arange(len(found)), [len(lab) for lab, _ in found])
    order = np.lexsort((interest, label, -score))  # best score first, then item, then interest
    label, score, interest = label[order], score[order], interest[order]
    _, first = np.unique(label, return_index=True)  # each item once, with its best interest
    first.sort()
    keep = first[~np.isin(label[first], seen)][:top_n]
    return label[keep], score[keep], interest[keep]


def exact(embeddings: np.ndarray, interests: np.ndarray, seen: np.ndarray, top_n: int) -> np.ndarray:
    """Labels (embedding rows) of the exact top `top_n`: max over interests [K', d] of embeddings @ v, `seen` out."""
    scores = (embeddings @ np.asarray(interests, dtype=np.float32).T).max(axis=1)
    scores[seen] = -np.inf
    n = min(top_n, len(scores) - len(np.unique(seen)))
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    return top[np.argsort(-scores[top], kind="stable")]


def recall(approx: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Mean over users of |approx ∩ truth| / |truth| (users whose exact list is empty are left out)."""
    shares = [len(np.intersect1d(a, t)) / len(t) for a, t in zip(approx, truth, strict=True) if len(t)]
    return float(np.mean(shares)) if shares else 1.0


def hnsw_lists(index: hnswlib.Index, queries: list[tuple[np.ndarray, np.ndarray]], top_n: int) -> list[np.ndarray]:
    """Each user's merged list (labels) from `index` (`build_index`'s) at its current ef; `queries`: (interests
    [K', d], seen labels)."""
    k = search_k(index.get_current_count(), top_n, [s for _, s in queries])
    labels, dist = index.knn_query(lift_queries(np.concatenate([q for q, _ in queries])), k=k, num_threads=1)
    out, row = [], 0
    for interests, seen in queries:
        rows = range(row, row + len(interests))
        row += len(interests)
        out.append(merge([(labels[r].astype(np.int64), dist[r]) for r in rows], seen, top_n)[0])
    return out


def measure(index: hnswlib.Index, embeddings: np.ndarray, queries: list[tuple[np.ndarray, np.ndarray]],
            efs: tuple[int, ...] = EFS, top_n: int = TOP_N, stop_at: float | None = None) -> dict[int, float]:
    """recall@top_n of `index` at each ef, smallest first, against the exact lists; with `stop_at`, none past the
    first ef that reaches it (a release needs no more). The index is left at the last ef measured."""
    truth = [exact(embeddings, interests, seen, top_n) for interests, seen in queries]
    out = {}
    for ef in sorted(efs):
        index.set_ef(ef)
        out[ef] = recall(hnsw_lists(index, queries, top_n), truth)
        if stop_at is not None and out[ef] >= stop_at:
            break
    return out


def choose_ef(recalls: dict[int, float], target: float) -> int | None:
    """The smallest ef whose recall reaches `target`; None when none does."""
    reached = [ef for ef, r in sorted(recalls.items()) if r >= target]
    return reached[0] if reached else None
