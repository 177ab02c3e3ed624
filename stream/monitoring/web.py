"""HTTP endpoints of a worker, on its Faust web server (beside /metrics; 127.0.0.1:6066 by default,
MINDSTREAM_WEB_BIND / MINDSTREAM_WEB_PORT):

    GET /                        -> HTML: the served version, this worker's recent users, links
    GET /users/{id}              -> JSON: behaviors, profile, model version, latest candidates; 404 if unknown.
                                    With `Accept: text/html` (a browser) or ?format=html: the same as a page
                                    (stream/monitoring/pages.py) with categories, the heatmap inline and the candidates
                                    grouped by the interest that nominated them; ?format=json forces JSON
    GET /users/{id}/explain.png  -> coupling-coefficient heatmap of the user's behaviors (model/explain.py)

A user's state lives on the worker that owns the user's partition. The views are wrapped in Faust's
`table_route`, which answers locally when this worker owns the key and otherwise forwards the request to
the owner's web server (its `web_host:web_port` as announced in the group assignment).
"""

from __future__ import annotations

import asyncio
import heapq
import tempfile
import threading
from pathlib import Path
from typing import Any

import faust

from model.explain import plot_coupling, user_coupling
from model.release import Release
from stream.messages import Candidates
from stream.monitoring import pages
from stream.worker import recall
from stream.worker.behaviors import Behaviors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# pyplot keeps global state: one figure at a time, drawn off the event loop so agents keep consuming.
_PLOT_LOCK = threading.Lock()
# GET / finds the recent users by reading this worker's behaviors table; bounded so the page stays cheap
RECENT_USERS = 20
RECENT_SCAN = 20_000


def user_document(user_id: str, state: dict[str, Any], latest: Candidates | None,
                  serving_version: str | None) -> dict[str, Any]:
    """The JSON body of GET /users/{id}."""
    behaviors = Behaviors.from_state(state)
    return {
        "user_id": user_id,
        "behaviors": [{"ts": ts, "item_id": item} for ts, item in behaviors.seq],
        "profile": behaviors.profile,
        # the version whose interests produced the latest candidates; the serving one when there are none yet
        "model_version": latest.model_version if latest is not None else serving_version,
        "serving_version": serving_version,
        "candidates": latest.to_dict() if latest is not None else None,
    }


def explain_png(release: Release, state: dict[str, Any], user_id: str) -> tuple[bytes, int]:
    """The heatmap PNG of the user's coupling coefficients under `release`, and the user's number of interests
    K'u (ValueError: no item known)."""
    behaviors = Behaviors.from_state(state)
    ids, weights, k = user_coupling(release, behaviors.items, behaviors.profile)
    title = f"user {user_id}: {len(ids)} behaviors, K'u = {k} interests (model {release.version})"
    with _PLOT_LOCK, tempfile.TemporaryDirectory(prefix="mindstream-explain-") as tmp:
        out = plot_coupling(ids, weights, Path(tmp) / "coupling.png", title=title)
        return out.read_bytes(), k


def wants_html(request: faust.web.Request) -> bool:
    """JSON unless asked for a page: ?format=html, or a browser's Accept (text/html); ?format=json wins."""
    fmt = request.query.get("format", "")
    if fmt in ("json", "html"):
        return fmt == "html"
    return "text/html" in request.headers.get("Accept", "")


def recent_users(behaviors_table: Any, n: int = RECENT_USERS, scan: int = RECENT_SCAN
                 ) -> tuple[list[tuple[str, float, int]], int, bool]:
    """(user, last click ts, behaviors) of the `n` users with the latest clicks among the first `scan` users of
    the table's local partitions, newest first; then how many were scanned and whether the scan stopped early."""
    found: list[tuple[float, str, int]] = []
    scanned = 0
    for user, state in behaviors_table.items():
        if scanned >= scan:
            return _newest(found, n), scanned, True
        scanned += 1
        seq = (state or {}).get("seq") or ()
        if seq:
            found.append((float(seq[-1][0]), str(user), len(seq)))
    return _newest(found, n), scanned, False


def _newest(found: list[tuple[float, str, int]], n: int) -> list[tuple[str, float, int]]:
    return [(user, ts, length) for ts, user, length in heapq.nlargest(n, found)]


def install(app: faust.App, behaviors_table: Any, releases: Any, candidates_table: Any | None = None) -> None:
    """Add the /users pages to `app`.

    behaviors_table: user id -> Behaviors state (stream/worker/behaviors.py); candidates_table: user id -> the latest
    `candidates` value (optional); releases: a stream.worker.releases.ReleaseRegistry.
    """

    def serving_version() -> str | None:
        try:
            return releases.current.version
        except LookupError:
            return None

    def latest_candidates(user_id: str) -> Candidates | None:
        return recall.latest_candidates(candidates_table, user_id) if candidates_table is not None else None

    def explained_release(latest: Candidates | None) -> Release | None:
        """The model that produced the user's candidates when it is still loaded, else the serving one."""
        release = releases.get(latest.model_version) if latest is not None else None
        if release is None:
            try:
                release = releases.current
            except LookupError:
                return None
        return release

    async def heatmap(release: Release, state: dict[str, Any], user_id: str) -> tuple[bytes, int]:
        """explain_png off the event loop (ValueError: no item of the user is known to `release`)."""
        return await asyncio.get_running_loop().run_in_executor(None, explain_png, release, state, user_id)

    # Faust mounts a placeholder ({"status": "OK"}) at "/"; the index page below takes its place.
    app.web.blueprints._enabled = [(prefix, bp) for prefix, bp in app.web.blueprints._enabled
                                   if "production_index" not in str(bp)]

    @app.page("/")
    async def index_view(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        try:
            serving = releases.current.manifest
        except LookupError:
            serving = None
        recent, scanned, capped = recent_users(behaviors_table)
        return self.html(pages.index_page(serving, recent, scanned, capped))

    @app.page("/users/{user_id}")
    @app.table_route(table=behaviors_table, match_info="user_id")
    async def user_view(self: faust.web.View, request: faust.web.Request, user_id: str) -> faust.web.Response:
        state = behaviors_table.get(user_id)
        html = wants_html(request)
        if not state:
            error = f"unknown user {user_id!r}"
            return self.html(pages.error_page(error), status=404) if html else self.json({"error": error}, status=404)
        latest = latest_candidates(user_id)
        doc = user_document(user_id, state, latest, serving_version())
        if not html:
            return self.json(doc)
        release = explained_release(latest)
        png, k, note = None, 0, "no model is being served"
        if release is not None:
            try:
                png, k = await heatmap(release, state, user_id)
            except ValueError as e:
                note = str(e)
        categories = release.item_categories if release is not None else {}
        return self.html(pages.user_page(doc, categories, png, note, n_interests=k))

    @app.page("/users/{user_id}/explain.png")
    @app.table_route(table=behaviors_table, match_info="user_id")
    async def explain_view(self: faust.web.View, request: faust.web.Request, user_id: str) -> faust.web.Response:
        state = behaviors_table.get(user_id)
        if not state:
            return self.json({"error": f"unknown user {user_id!r}"}, status=404)
        release = explained_release(latest_candidates(user_id))
        if release is None:
            return self.json({"error": "no model is being served"}, status=503)
        try:
            png, _ = await heatmap(release, state, user_id)
        except ValueError as e:  # none of the user's items is known to this model: nothing to explain
            return self.json({"error": str(e)}, status=404)
        return self.bytes(png, content_type="image/png")
