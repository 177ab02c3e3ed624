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

The graph still misses the longest vectors: on the 1M release at ef 100, 90 % of the exact list's items that the
search did not find were among the catalog's longest 1.7 %, and at ef 600 among its longest 0.6 % (the items
found: median norm percentile 0.94). Lifted, a long item sits near the equator, where few items are, and the
greedy search rarely gets there. So a release also names an *exact head* (`ExactHead`): its `head_size` longest
item vectors, scored by a full inner product beside every search, their results merged with the graph's (an
item in both has the same score). The same max over interests, exact for those items: the longest 0.5 % took
the 1M release from recall@100 0.910 to 0.980 at ef 100, for 0.13 ms per interest (docs/benchmarks/ann.md).
"""

from __future__ import annotations

import math
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
# The exact head: this share of a catalog's items, the longest vectors, at most HEAD_MAX (5,000 rows of d = 64
# score in about 0.1 ms per interest, one core; past that the head costs more than the graph search it spares).
HEAD_SHARE = 0.005
HEAD_MAX = 5000


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


def head_size(n_items: int) -> int:
    """Items of an `n_items` catalog a release searches exactly (`ExactHead`)."""
    return min(HEAD_MAX, math.ceil(HEAD_SHARE * n_items))


@dataclass
class ExactHead:
    """The longest item vectors, searched by a full inner product beside the graph: `labels` [H] (embedding rows,
    longest first) and their vectors as `columns` [d, H] (contiguous: q @ columns is ~3x q @ vectors.T)."""

    labels: np.ndarray
    columns: np.ndarray

    @classmethod
    def of(cls, embeddings: np.ndarray, size: int) -> ExactHead:
        """The `size` longest rows of `embeddings`, longest first (ties: the smaller row first)."""
        emb = np.asarray(embeddings, dtype=np.float32)
        size = min(max(0, size), emb.shape[0])
        sq = np.einsum("ij,ij->i", emb, emb)  # float32: a 1M-item release's float64 copy would be 0.5 GB
        top = np.argpartition(-sq, size - 1)[:size] if 0 < size < len(sq) else np.arange(size)
        labels = top[np.lexsort((top, -sq[top]))].astype(np.int64)
        return cls(labels, np.ascontiguousarray(emb[labels].T))

    def search(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query row [Q, d]: (labels, 'ip' distances 1 - e . v) of its best min(k, H) head items, unordered."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, len(self.labels))
        if k <= 0:
            empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
            return [empty] * q.shape[0]
        scores = q @ self.columns  # [Q, H]
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
            np.broadcast_to(np.arange(k), scores.shape)
        best = np.take_along_axis(scores, top, axis=1)
        return [(self.labels[t], 1.0 - s) for t, s in zip(top, best, strict=True)]


def with_head(graph: list[tuple[np.ndarray, np.ndarray]], head: list[tuple[np.ndarray, np.ndarray]]
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query row: the graph's results and the head's, one (labels, distances) pair (`merge` keeps an item
    found by both once)."""
    return [(np.concatenate([gl, hl]), np.concatenate([gd, hd])) if len(hl) else (gl, gd)
            for (gl, gd), (hl, hd) in zip(graph, head, strict=True)]


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


def hnsw_lists(index: hnswlib.Index, queries: list[tuple[np.ndarray, np.ndarray]], top_n: int,
               head: ExactHead | None = None) -> list[np.ndarray]:
    """Each user's merged list (labels) from `index` (`build_index`'s) at its current ef, and `head` when given;
    `queries`: (interests [K', d], seen labels)."""
    k = search_k(index.get_current_count(), top_n, [s for _, s in queries])
    flat = np.concatenate([q for q, _ in queries])
    labels, dist = index.knn_query(lift_queries(flat), k=k, num_threads=1)
    found = list(zip(labels.astype(np.int64), dist, strict=True))
    if head is not None:
        found = with_head(found, head.search(flat, k))
    out, row = [], 0
    for interests, seen in queries:
        out.append(merge(found[row : row + len(interests)], seen, top_n)[0])
        row += len(interests)
    return out


def measure(index: hnswlib.Index, embeddings: np.ndarray, queries: list[tuple[np.ndarray, np.ndarray]],
            efs: tuple[int, ...] = EFS, top_n: int = TOP_N, stop_at: float | None = None,
            head: ExactHead | None = None) -> dict[int, float]:
    """recall@top_n of `index` (with `head` searched beside it) at each ef, smallest first, against the exact
    lists; with `stop_at`, none past the first ef that reaches it (a release needs no more). The index is left at
    the last ef measured."""
    truth = [exact(embeddings, interests, seen, top_n) for interests, seen in queries]
    out = {}
    for ef in sorted(efs):
        index.set_ef(ef)
        out[ef] = recall(hnsw_lists(index, queries, top_n, head), truth)
        if stop_at is not None and out[ef] >= stop_at:
            break
    return out


def choose_ef(recalls: dict[int, float], target: float) -> int | None:
    """The smallest ef whose recall reaches `target`; None when none does."""
    reached = [ef for ef, r in sorted(recalls.items()) if r >= target]
    return reached[0] if reached else None
