"""Releases held by version, so every message is served by the model version it names.

The interest agent runs the *current* release's tower and stamps its version on the interests; the
recall agent searches the index of the version stamped on each message. During a hot swap both
versions stay loaded until no message of the old one can still be in flight (the last `keep` are kept).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

from model.release import Release, ReleaseError, current_release_dir, load_release
from stream import metrics

log = logging.getLogger(__name__)


class ReleaseRegistry:
    def __init__(self, models_dir: str | Path | None = None, keep: int = 3) -> None:
        self.models_dir = Path(models_dir) if models_dir else None
        self.keep = keep
        self._releases: OrderedDict[str, Release] = OrderedDict()
        self._current: str | None = None
        self._failed: set[str] = set()

    @property
    def current(self) -> Release:
        if self._current is None:
            raise LookupError("no release is being served")
        return self._releases[self._current]

    def serve(self, release: Release) -> None:
        """Make `release` the current one (it was verified by load_release)."""
        self._releases[release.version] = release
        self._releases.move_to_end(release.version)
        self._current = release.version
        while len(self._releases) > self.keep:
            oldest = next(iter(self._releases))
            if oldest == self._current:
                break
            del self._releases[oldest]
        metrics.serve_version(release.version)

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
        self._releases[version] = release
        return release
