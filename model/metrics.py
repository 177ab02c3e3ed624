"""HitRate@N and NDCG@N under the protocol of docs/evaluation.md.

The target is ranked against ALL items; the items already in the user's history are removed from
the ranking (the target itself is never removed), and so is the padding index 0. The rank is the
number of remaining items that score strictly higher than the target, plus half of those that tie
with it — an exact tie is a coin flip, so a constant scorer is neither rewarded nor punished.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

CUTOFFS = (10, 50, 100)
NDCG_AT = 50
# Rows per chunk: [chunk x n_items] float32 scores stay small (12k items -> ~50 MB at 1024 rows).
DEFAULT_CHUNK = 1024

# score_fn(items [b, L] int64, profile [b, F] int64) -> scores [b, n_items + 1] (column 0 = padding)
ScoreFn = Callable[[np.ndarray, np.ndarray], "np.ndarray | torch.Tensor"]


def target_ranks(scores: np.ndarray | torch.Tensor, targets: np.ndarray, histories: np.ndarray) -> np.ndarray:
    """0-based rank of each target among the non-history items. scores: [B, n_items + 1];
    targets: [B] item indices; histories: [B, L] item indices, 0 = padding."""
    s = torch.as_tensor(scores, dtype=torch.float32).clone()
    t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    h = torch.as_tensor(np.asarray(histories), dtype=torch.long)
    rows = torch.arange(s.shape[0])
    target_score = s[rows, t].clone()
    s[:, 0] = -torch.inf
    if h.numel():
        s.scatter_(1, h, -torch.inf)
    s[rows, t] = target_score
    higher = (s > target_score[:, None]).sum(1)
    ties = (s == target_score[:, None]).sum(1) - 1  # the target ties with itself
    return (higher.double() + ties.double() / 2).numpy()


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"HR@{n}": float(np.mean(ranks < n)) for n in CUTOFFS}
    # rank r (0-based) gains 1/log2(r + 2); one relevant item, so IDCG = 1.
    gain = np.where(ranks < NDCG_AT, 1.0 / np.log2(ranks + 2.0), 0.0)
    out[f"NDCG@{NDCG_AT}"] = float(np.mean(gain))
    return out


def rank_metrics(
    scores: np.ndarray | torch.Tensor, targets: np.ndarray, histories: np.ndarray
) -> dict[str, float]:
    """HR@10/50/100 and NDCG@50 of one batch of scored users."""
    return metrics_from_ranks(target_ranks(scores, targets, histories))


@torch.no_grad()
def evaluate_scorer(
    score_fn: ScoreFn,
    items: np.ndarray,
    profile: np.ndarray,
    targets: np.ndarray,
    exclude: np.ndarray,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """Score users chunk by chunk (bounded memory) and aggregate HR@N / NDCG@50 over all of them."""
    ranks = []
    for start in range(0, len(targets), chunk):
        sl = slice(start, start + chunk)
        scores = score_fn(items[sl], profile[sl])
        ranks.append(target_ranks(scores, targets[sl], exclude[sl]))
    return metrics_from_ranks(np.concatenate(ranks) if ranks else np.zeros(0))


def evaluate_split(score_fn: ScoreFn, split, part: str = "test", chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
    """Metrics of `score_fn` on the `valid` or `test` part of a `model.data.Split`."""
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', not {part!r}")
    return evaluate_scorer(
        score_fn,
        getattr(split, f"{part}_items"),
        split.profile,
        getattr(split, f"{part}_target"),
        getattr(split, f"{part}_exclude"),
        chunk,
    )
