"""Non-neural baselines with the towers' scoring interface: `score(items [b, L], profile [b, F]) -> [b, n_items + 1]`.

Both are fitted on the training parts of a `Split` only (validation and test targets unseen).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from model.data import Split, item_popularity


@contextmanager
def _quiet_sparse() -> Iterator[None]:
    """torch warns that sparse CSR is beta and that invariant checks are off; both are known here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse", category=UserWarning)
        yield


class MostPop:
    """Every user gets the items ranked by training popularity."""

    def __init__(self, split: Split) -> None:
        self.popularity = torch.as_tensor(item_popularity(split), dtype=torch.float32)
        self.params = 0

    def score(self, items: np.ndarray, profile: np.ndarray) -> torch.Tensor:
        return self.popularity.expand(len(items), -1)


class ItemCF:
    """Item-based collaborative filtering: cosine similarity on user co-occurrence,
    sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|), with a user's history similarities summed.

    The co-occurrence is counted once per user (binary user x item matrix) over training parts and
    kept sparse (CSR): its size grows with the co-occurring pairs, not with the catalogue squared."""

    def __init__(self, split: Split) -> None:
        n = split.n_items + 1
        self.n = n
        rows, cols = [], []
        for u, seq in enumerate(split.train_sequences):
            uniq = np.unique(np.asarray(seq, dtype=np.int64))
            rows.append(np.full(len(uniq), u, dtype=np.int64))
            cols.append(uniq)
        r = torch.as_tensor(np.concatenate(rows)) if rows else torch.zeros(0, dtype=torch.long)
        c = torch.as_tensor(np.concatenate(cols)) if cols else torch.zeros(0, dtype=torch.long)
        with _quiet_sparse():
            ui = torch.sparse_coo_tensor(torch.stack([r, c]), torch.ones(len(r)), (len(split.train_sequences), n))
            co = torch.sparse.mm(ui.t().coalesce(), ui.coalesce()).coalesce()  # [n, n] co-occurrence counts
        idx, counts = co.indices(), co.values()
        users_per_item = torch.zeros(n).index_add_(0, c, torch.ones(len(c)))
        norm = users_per_item.sqrt().clamp_min(1.0)
        # an item is not evidence for itself (history items are excluded from the ranking anyway)
        off = idx[0] != idx[1]
        idx = idx[:, off]
        values = counts[off] / (norm[idx[0]] * norm[idx[1]])
        with _quiet_sparse():
            self.similarity = torch.sparse_coo_tensor(idx, values, (n, n)).coalesce().to_sparse_csr()
        self.params = 0

    def score(self, items: np.ndarray, profile: np.ndarray) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(items), dtype=torch.long)
        rows, cols = torch.nonzero(idx, as_tuple=True)  # padding (0) contributes nothing
        # the sum of the history's similarity rows, as a sparse multi-hot [b, n] times the sparse similarity
        with _quiet_sparse():
            history = torch.sparse_coo_tensor(
                torch.stack([rows, idx[rows, cols]]), torch.ones(len(rows)), (idx.shape[0], self.n)
            ).coalesce().to_sparse_csr()
            return (history @ self.similarity).to_dense()
