"""New items: items a served release was not trained on, indexed while it serves with the vector its embedding
layer gives an item known only by its category (the category's embedding, model/mind.py ItemEmbedding).

The state is per release (per model version): two versions' vector spaces differ. An item takes a slot; slot s
is label n + s of the release's hnswlib index (n = the trained items, labels 0..n-1). Past `capacity` slots the
oldest item's slot is reused: hnswlib updates an existing label in place, so memory stays bounded.

hnswlib's add_items is not safe concurrently with knn_query, and resize_index with neither (hnswlib README;
nmslib/hnswlib issues 29, 562, 590), and both release the GIL: every access to the index goes through `lock`,
whichever thread makes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import hnswlib
import numpy as np

DEFAULT_CAPACITY = 100_000
GROWTH_MIN = 1024  # index rows added at least per resize: a resize copies the whole graph


class NewItems:
    def __init__(self, index: hnswlib.Index, n_items: int, categories: list[str], category_vectors: np.ndarray,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        self.lock = threading.Lock()
        self.index = index
        self.n = n_items
        self.capacity = capacity
        self.category_index = {c: i + 1 for i, c in enumerate(categories)}  # row of category_vectors
        self.category_vectors = category_vectors
        self.slots: OrderedDict[str, int] = OrderedDict()  # item id -> slot, oldest first
        self.ids: list[str] = []  # slot -> item id
        self.categories: list[str] = []  # slot -> category
        self.vectors = np.zeros((0, category_vectors.shape[1]), dtype=np.float32)  # slot -> vector (grown x2)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.slots

    def knows(self, category: str | None) -> bool:
        return category is not None and category in self.category_index

    def add(self, item_id: str, category: str) -> bool:
        """Index `item_id` with `category`'s vector. False (nothing changes) when the category is unknown to the
        release, the item is there with that category already, or the capacity is 0."""
        row = self.category_index.get(category)
        if row is None or self.capacity <= 0:
            return False
        slot = self.slots.get(item_id)
        if slot is not None:
            if self.categories[slot] == category:
                return False
            self.categories[slot] = category  # re-categorised: the same slot, a new vector
        elif len(self.ids) < self.capacity:
            slot = len(self.ids)
            self.slots[item_id] = slot
            self.ids.append(item_id)
            self.categories.append(category)
            if slot >= self.vectors.shape[0]:
                grown = np.zeros((max(GROWTH_MIN, 2 * self.vectors.shape[0]), self.vectors.shape[1]), np.float32)
                grown[: self.vectors.shape[0]] = self.vectors
                self.vectors = grown
        else:  # full: the oldest item goes, its slot is reused
            oldest, slot = self.slots.popitem(last=False)
            self.slots[item_id] = slot
            self.ids[slot], self.categories[slot] = item_id, category
        vector = self.category_vectors[row]
        self.vectors[slot] = vector
        with self.lock:
            if self.n + slot >= self.index.get_max_elements():
                target = self.n + min(self.capacity, max(GROWTH_MIN, 2 * len(self.ids)))
                self.index.resize_index(max(target, self.n + slot + 1))
            self.index.add_items(vector[None, :], np.asarray([self.n + slot]), num_threads=1)
        return True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """hnswlib knn_query (labels, distances) of `queries` [Q, d] over trained and new items, k clipped to
        what the index holds."""
        with self.lock:
            k = min(k, self.index.get_current_count())
            return self.index.knn_query(queries, k=k, num_threads=1)

    def vector(self, item_id: str) -> np.ndarray | None:
        slot = self.slots.get(item_id)
        return None if slot is None else self.vectors[slot]

    def slot(self, item_id: str) -> int | None:
        return self.slots.get(item_id)
