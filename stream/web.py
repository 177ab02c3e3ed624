"""HTTP endpoints of a worker, on its Faust web server (beside /metrics; 127.0.0.1:6066 by default,
MINDSTREAM_WEB_BIND / MINDSTREAM_WEB_PORT):

    GET /users/{id}              -> JSON: behaviors, profile, model version, latest candidates; 404 if unknown
    GET /users/{id}/explain.png  -> coupling-coefficient heatmap of the user's behaviors (model/explain.py)

A user's state lives on the worker that owns the user's partition. The views are wrapped in Faust's
`table_route`, which answers locally when this worker owns the key and otherwise forwards the request to
the owner's web server (its `web_host:web_port` as announced in the group assignment).
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any

import faust

from model.explain import plot_coupling, user_coupling
from model.release import Release
from stream import recall
from stream.behaviors import Behaviors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# pyplot keeps global state: one figure at a time, drawn off the event loop so agents keep consuming.
_PLOT_LOCK = threading.Lock()


def user_document(user_id: str, state: dict[str, Any], latest: dict[str, Any] | None,
                  serving_version: str | None) -> dict[str, Any]:
    """The JSON body of GET /users/{id}."""
    behaviors = Behaviors.from_state(state)
    return {
        "user_id": user_id,
        "behaviors": [{"ts": ts, "item_id": item} for ts, item in behaviors.seq],
        "profile": behaviors.profile,
        # the version whose interests produced the latest candidates; the serving one when there are none yet
        "model_version": (latest or {}).get("model_version") or serving_version,
        "serving_version": serving_version,
        "candidates": latest,
    }


def explain_png(release: Release, state: dict[str, Any], user_id: str) -> bytes:
    """The heatmap PNG of the user's coupling coefficients under `release` (ValueError: no item known)."""
    behaviors = Behaviors.from_state(state)
    ids, weights, k = user_coupling(release, behaviors.items, behaviors.profile)
    title = f"user {user_id}: {len(ids)} behaviors, K'u = {k} interests (model {release.version})"
    with _PLOT_LOCK, tempfile.TemporaryDirectory(prefix="mindstream-explain-") as tmp:
        out = plot_coupling(ids, weights, Path(tmp) / "coupling.png", title=title)
        return out.read_bytes()


def install(app: faust.App, behaviors_table: Any, releases: Any, candidates_table: Any | None = None) -> None:
    """Add the /users pages to `app`.

    behaviors_table: user id -> Behaviors state (stream/behaviors.py); candidates_table: user id -> the latest
    `candidates` value (optional); releases: a stream.releases.ReleaseRegistry.
    """

    def serving_version() -> str | None:
        try:
            return releases.current.version
        except LookupError:
            return None

    def latest_candidates(user_id: str) -> dict[str, Any] | None:
        return recall.latest_candidates(candidates_table, user_id) if candidates_table is not None else None

    @app.page("/users/{user_id}")
    @app.table_route(table=behaviors_table, match_info="user_id")
    async def user_view(self: faust.web.View, request: faust.web.Request, user_id: str) -> faust.web.Response:
        state = behaviors_table.get(user_id)
        if not state:
            return self.json({"error": f"unknown user {user_id!r}"}, status=404)
        return self.json(user_document(user_id, state, latest_candidates(user_id), serving_version()))

    @app.page("/users/{user_id}/explain.png")
    @app.table_route(table=behaviors_table, match_info="user_id")
    async def explain_view(self: faust.web.View, request: faust.web.Request, user_id: str) -> faust.web.Response:
        state = behaviors_table.get(user_id)
        if not state:
            return self.json({"error": f"unknown user {user_id!r}"}, status=404)
        # Explain the model that produced the user's candidates when it is still loaded, else the serving one.
        latest = latest_candidates(user_id) or {}
        release = releases.get(latest["model_version"]) if latest.get("model_version") else None
        if release is None:
            try:
                release = releases.current
            except LookupError:
                return self.json({"error": "no model is being served"}, status=503)
        try:
            png = await asyncio.get_running_loop().run_in_executor(None, explain_png, release, state, user_id)
        except ValueError as e:  # none of the user's items is known to this model: nothing to explain
            return self.json({"error": str(e)}, status=404)
        return self.bytes(png, content_type="image/png")
