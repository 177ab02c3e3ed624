"""Releases held by version, so every message is served by the model version it names.

The interest agent runs the *current* release's tower and stamps its version on the interests; the
recall agent searches the index of the version stamped on each message. During a hot swap both
versions stay loaded until no message of the old one can still be in flight (the last `keep` are kept).

The registry also holds the catalog of new items (the `items` topic, clicks that name a category): items a
release was not trained on. Every held release indexes them with its own category vectors
(model/new_items.py), so each version's interests and index stay consistent; a release that was trained on an
item serves its own vector for it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

from model.new_items import DEFAULT_CAPACITY
from model.release import Release, ReleaseError, current_release_dir, load_release
from stream.monitoring import metrics

log = logging.getLogger(__name__)


class ReleaseRegistry:
    def __init__(self, models_dir: str | Path | None = None, keep: int = 3,
                 max_new_items: int = DEFAULT_CAPACITY) -> None:
        self.models_dir = Path(models_dir) if models_dir else None
        self.keep = keep
        self.max_new_items = max_new_items
        self._releases: OrderedDict[str, Release] = OrderedDict()
        self._current: str | None = None
        self._failed: set[str] = set()
        self.catalog: OrderedDict[str, str] = OrderedDict()  # new item id -> category, oldest first (bounded)

    @property
    def current(self) -> Release:
        if self._current is None:
            raise LookupError("no release is being served")
        return self._releases[self._current]

    def add_item(self, item_id: str, category: str) -> bool:
        """Register an item of `category` (from `items` or a click): every held release that was not trained on it
        indexes it. True when the served release gained it (a new item to count). An item the served release
        was trained on is not kept: a full catalog announced on `items` must not evict the new items."""
        if self.catalog.get(item_id) == category or (self._current and item_id in self.current.item_index):
            return False
        self.catalog[item_id] = category
        self.catalog.move_to_end(item_id)
        while len(self.catalog) > self.max_new_items:
            self.catalog.popitem(last=False)
        added = False
        for version, release in self._releases.items():
            if item_id not in release.item_index and release.new_items.add(item_id, category):
                added = added or version == self._current
        metrics.NEW_ITEMS_LIVE.set(len(self.current.new_items) if self._current else 0)
        return added

    def adopt(self, release: Release, catalog: list[tuple[str, str]] | None = None) -> None:
        """Index the catalog's items `release` was not trained on (`catalog`: a snapshot of it). Blocking for a
        large catalog: run it off the event loop while `release` is not yet held (hotswap.handle)."""
        release.new_items.capacity = self.max_new_items
        for item_id, category in (list(self.catalog.items()) if catalog is None else catalog):
            if item_id not in release.item_index:
                release.new_items.add(item_id, category)

    def serve(self, release: Release) -> None:
        """Make `release` the current one (it was verified by load_release). Catalog items it has not indexed yet
        (all of them, or those registered since an `adopt` off the loop) are indexed first."""
        self.adopt(release)
        self._releases[release.version] = release
        self._releases.move_to_end(release.version)
        self._current = release.version
        while len(self._releases) > self.keep:
            oldest = next(iter(self._releases))
            if oldest == self._current:
                break
            del self._releases[oldest]
        metrics.serve_version(release.version)
        metrics.NEW_ITEMS_LIVE.set(len(release.new_items))

    def load_initial(self, release_dir: str | Path | None = None) -> Release:
        """Serve `release_dir`, or the one models_dir/CURRENT names; raises ReleaseError when neither loads."""
        if release_dir:
            path = Path(release_dir)
        elif self.models_dir is not None:
            path = current_release_dir(self.models_dir)
        else:
            raise ReleaseError("neither a release directory nor a models directory was given")
        release = load_release(path)
        self.serve(release)
        return release

    def get(self, version: str) -> Release | None:
        """The release of `version`, loading models_dir/<version> on first use; None when it cannot be had."""
        release = self._releases.get(version)
        if release is not None or version in self._failed:
            return release
        if self.models_dir is None or not version or "/" in version or version.startswith("."):
            return None
        try:
            release = load_release(self.models_dir / version)
        except ReleaseError as e:
            # remembered: a missing or broken release must not be re-verified for every message
            self._failed.add(version)
            log.warning("release %s unavailable: %s", version, e)
            return None
        self.adopt(release)
        self._releases[version] = release
        return release
