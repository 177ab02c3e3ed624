"""`mindstream worker`: the Faust worker, in this process, running the interest and/or recall agent.

Every flag is a setting of `Settings` (stream/config.py) and defaults to its environment variable, so a
container is configured by its environment and a shell by flags. SIGTERM and SIGINT stop it cleanly: agents
finish the event in hand, offsets and table changelogs are flushed, RocksDB is closed.
"""

from __future__ import annotations

import argparse
import logging
import sys

from model.settings import add_flags, from_args
from stream.config import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, Settings)


def settings_from_args(args: argparse.Namespace) -> Settings:
    return from_args(Settings, args)


def build(settings: Settings):
    """The configured Faust app with its agents and the release registry it serves from. The agents' tables
    are `app.tables["behaviors"]` (interest role) and `app.tables["latest-candidates"]` (recall role)."""
    from stream.monitoring import online
    from stream.monitoring.install import install as install_monitoring
    from stream.worker import catalog, hotswap, interests, recall
    from stream.worker.app import create_app
    from stream.worker.releases import ReleaseRegistry

    registry = ReleaseRegistry(settings.models_dir, max_new_items=settings.max_new_items)
    registry.load_initial(settings.release or None)
    app = create_app(settings)
    items_topic = catalog.install(app, settings, registry)  # follows `items`: new items indexed live
    # one process running both agents hands the interests to recall in memory, not through user-interests
    candidates = recall.install(app, settings, registry, consume=settings.role == "recall") \
        if settings.runs_recall() else None
    if settings.runs_interest():
        # both agents here: the interest agent judges each click against the latest list (online hit rate)
        judge = online.click_judge(candidates.latest) if candidates is not None else None
        interests.install(app, settings, registry, candidates, items_topic, judge)
    install_monitoring(app, settings, registry)  # consumer lag, online hit rate, /users pages
    hotswap.install(app, settings, registry)  # follows model-releases: verified releases swap in (docs/hotswap.md)
    return app, registry


def run(args: argparse.Namespace) -> int:
    import faust
    import torch

    from model.release import ReleaseError

    settings = settings_from_args(args)
    # torch runs only the interest-similarity metric here, on [batch, K, d]: with its default of one OpenMP
    # thread per core that took 12 ms per batch (threads spinning against the broker and onnxruntime), one
    # thread takes 0.1 ms (docs/benchmarks/profile-beauty.md), and the spinning thread took cores the broker and a
    # retrain beside it need (docs/benchmarks/retrain_beside.md)
    torch.set_num_threads(1)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from stream.errors import CommandError

    try:
        app, registry = build(settings)
    except (ReleaseError, LookupError) as e:
        raise CommandError(f"no release to serve: {e}") from e
    print(f"mindstream worker: role={settings.role} model={registry.current.version} bootstrap={settings.bootstrap} "
          f"metrics=http://{settings.web_bind}:{settings.web_port}/metrics", file=sys.stderr, flush=True)
    # faust.Worker installs the SIGTERM/SIGINT handlers that stop the app gracefully, then exits the process
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
    return 0
