"""What monitoring adds to a worker, in one call made by `stream.worker.main.build` after the agents:

- consumer lag per assigned partition (stream/monitoring/lag.py), on every role;
- the online hit-rate agent (stream/monitoring/online.py) on a recall worker (with `--role all` the interest agent
  judges the clicks itself: stream/worker/main.py);
- GET /users/{id} and /users/{id}/explain.png (stream/monitoring/web.py), where the behaviors table is (interest role,
  or all).
"""

from __future__ import annotations

from typing import Any

from stream.monitoring import lag, online, web
from stream.topology import BEHAVIORS, LATEST_CANDIDATES


def install(app: Any, settings: Any, registry: Any) -> None:
    """Idempotent: a second call on the same app adds nothing (agents and pages can be declared once)."""
    if getattr(app, "_mindstream_monitoring", False):
        return
    app._mindstream_monitoring = True
    lag.install(app)
    latest = app.tables.get(LATEST_CANDIDATES.name)  # read with stream.worker.recall.latest_candidates
    behaviors = app.tables.get(BEHAVIORS.name)
    if latest is not None and behaviors is None:
        online.install(app, settings, latest)
    if behaviors is not None:
        web.install(app, behaviors, registry, latest)
