"""New items: items a served release was not trained on, indexed while it serves with the vector its embedding
layer gives an item known only by its category (the category's embedding, model/mind.py ItemEmbedding).

The state is per release (per model version): two versions' vector spaces differ. Every new item of one category
has the same vector, so the hnswlib index holds that vector once, as the category's *anchor* (label
ANCHOR_BASE + slot; added with add_items, the index resized once to room for every category of the release),
and a search expands an anchor into the category's new items, newest first, each with the anchor's score: the
exact score e_i . v_u^k of each of them. Items themselves are plain entries (bounded: past `capacity` the oldest
go). Why not one hnswlib element per item: many identical vectors are harmless, but recycling elements for a
bound (hnswlib's update in place, or replace_deleted) broke the graph here (knn_query could no longer return 100
results for most queries after one wrap of a 1,000-item bound), and a bound without recycling grows forever.

The index is a release's (model/ann.py `build_index`: vectors lifted to the norm `radius`, which covers every
category vector), so an anchor is added lifted and queries are searched lifted.

hnswlib's add_items is not safe concurrently with knn_query, and resize_index with neither (hnswlib README;
nmslib/hnswlib issues 29, 562, 590), and both release the GIL: every access to the index goes through `lock`,
whichever thread makes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import hnswlib
import numpy as np

from model.ann import lift, lift_queries

DEFAULT_CAPACITY = 100_000
ANCHOR_BASE = 1 << 62  # hnswlib labels of the category anchors (trained items are 0..n-1)


class NewItems:
    def __init__(self, index: hnswlib.Index, radius: float, n_items: int, categories: list[str],
                 category_vectors: np.ndarray, capacity: int = DEFAULT_CAPACITY) -> None:
        self.lock = threading.Lock()
        self.index = index
        self.radius = radius
        self.n = n_items
        self.capacity = capacity
        self.category_index = {c: i + 1 for i, c in enumerate(categories)}  # row of category_vectors
        self.category_vectors = category_vectors
        self.items: OrderedDict[str, str] = OrderedDict()  # item id -> category, oldest first
        self.serial: dict[str, int] = {}  # item id -> its number (label n + number), never reused
        self.by_serial: dict[int, str] = {}
        self.members: dict[str, OrderedDict[str, None]] = {}  # category -> its new items, oldest first
        self.anchors: list[str] = []  # anchor slot -> category
        self._next = 0

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.items

    @property
    def ids(self) -> list[str]:
        return list(self.items)

    def add(self, item_id: str, category: str) -> bool:
        """Index `item_id` with `category`'s vector. False (nothing changes) when the category is unknown to the
        release, the item is there with that category already, or the capacity is 0."""
        if category not in self.category_index or self.capacity <= 0 or self.items.get(item_id) == category:
            return False
        if item_id in self.items:
            self._remove(item_id)  # re-categorised: a new vector
        if category not in self.members:
            self._add_anchor(category)
        self.items[item_id] = category
        self.members[category][item_id] = None
        self.serial[item_id] = self._next
        self.by_serial[self._next] = item_id
        self._next += 1
        while len(self.items) > self.capacity:
            self._remove(next(iter(self.items)))
        return True

    def _remove(self, item_id: str) -> None:
        category = self.items.pop(item_id)
        del self.members[category][item_id]
        del self.by_serial[self.serial.pop(item_id)]

    def _add_anchor(self, category: str) -> None:
        vector = lift(self.category_vectors[self.category_index[category]][None, :], self.radius)
        with self.lock:
            count = self.index.get_current_count()
            if count >= self.index.get_max_elements():
                self.index.resize_index(max(count + 1, self.n + len(self.category_index)))
            self.index.add_items(vector, np.asarray([ANCHOR_BASE + len(self.anchors)], dtype=np.uint64),
                                 num_threads=1)
        self.members[category] = OrderedDict()
        self.anchors.append(category)

    def search(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query row [Q, d]: (labels, distances) of its best k over trained and new items, best first (hnswlib
        'ip' distance, 1 - dot product). A new item's label is n + its number (`label`)."""
        lifted = lift_queries(queries)
        with self.lock:
            labels, distances = self.index.knn_query(lifted, k=min(k, self.index.get_current_count()), num_threads=1)
        if not self.anchors:
            return list(zip(labels.astype(np.int64), distances, strict=True))
        out = []
        for row_labels, row_dist in zip(labels, distances, strict=True):
            got_l: list[int] = []
            got_d: list[float] = []
            for label, dist in zip(row_labels.tolist(), row_dist.tolist(), strict=True):
                if label < ANCHOR_BASE:
                    got_l.append(label)
                    got_d.append(dist)
                else:  # the category's new items, newest first, as far as k allows
                    for item in reversed(self.members[self.anchors[label - ANCHOR_BASE]]):
                        if len(got_l) >= k:
                            break
                        got_l.append(self.n + self.serial[item])
                        got_d.append(dist)
                if len(got_l) >= k:
                    break
            out.append((np.asarray(got_l, dtype=np.int64), np.asarray(got_d, dtype=np.float32)))
        return out

    def vector(self, item_id: str) -> np.ndarray | None:
        category = self.items.get(item_id)
        return None if category is None else self.category_vectors[self.category_index[category]]

    def label(self, item_id: str) -> int | None:
        number = self.serial.get(item_id)
        return None if number is None else self.n + number

    def item_id(self, label: int) -> str:
        return self.by_serial[label - self.n]
