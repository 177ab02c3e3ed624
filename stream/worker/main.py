"""`mindstream worker`: the Faust worker, in this process, running the interest and/or recall agent.

Every flag defaults to an environment variable (stream/config.py), so a container is configured by
its environment and a shell by flags. SIGTERM and SIGINT stop it cleanly: agents finish the event in
hand, offsets and table changelogs are flushed, RocksDB is closed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields

from stream.config import ENV_NAMES, ROLES, Settings

HELP = {
    "bootstrap": "Kafka bootstrap servers host:port[,host:port]",
    "models_dir": "model releases directory holding CURRENT",
    "release": "serve this release directory instead of the one CURRENT names",
    "topic_prefix": "prefix of every topic name and of the Faust app id",
    "app_id": "Faust app id (consumer group, changelog topic prefix)",
    "state_dir": "directory of the RocksDB table files",
    "web_bind": "address of the HTTP server (/metrics)",
    "web_port": "port of the HTTP server (/metrics)",
    "partitions": "partitions of the topics the worker creates",
    "role": "agents to run: all, interest (clicks -> user-interests) or recall (user-interests -> candidates)",
    "top_n": "candidates per user",
    "batch_max": "most clicks per user-tower batch",
    "batch_window_ms": "longest wait, in ms, for a batch to fill (bounds the added latency)",
    "max_len": "behavior sequence bound; 0 = the release's max_len (a larger value keeps more history)",
    "dedup_size": "recent event ids remembered per user for de-duplication",
    "max_event_bytes": "larger click records are dead-lettered",
    "producer_max_batch_bytes": "producer batch size in bytes, 0 = Faust's default (16384)",
    "producer_linger_ms": "longest wait, in ms, for a produce batch to fill",
    "fetch_max_wait_ms": "longest time, in ms, the broker may hold a fetch for more data (Faust's fixed 1500 "
                         "adds up to 1.5 s per hop on a quiet partition)",
    "max_new_items": "most new items (not in the served release, indexed live by category) per model version; "
                     "past it the oldest go",
    "log_level": "log level (debug, info, warning, error)",
}


def configure(parser: argparse.ArgumentParser) -> None:
    env = Settings.from_env()
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(env, f.name)
        kwargs: dict = {"type": type(default), "default": default,
                        "help": f"{HELP[f.name]} (env {ENV_NAMES[f.name]}; default %(default)s)"}
        if f.name == "role":
            kwargs["choices"] = ROLES
        names = [flag, "--models"] if f.name == "models_dir" else [flag]
        parser.add_argument(*names, dest=f.name, **kwargs)


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})


def build(settings: Settings):
    """The configured Faust app with its agents and the release registry it serves from. The agents' tables
    are `app.tables["behaviors"]` (interest role) and `app.tables["latest-candidates"]` (recall role)."""
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
        interests.install(app, settings, registry, candidates, items_topic)
    install_monitoring(app, settings, registry)  # consumer lag, online hit rate, /users pages
    hotswap.install(app, settings, registry)  # follows model-releases: verified releases swap in (docs/hotswap.md)
    return app, registry


def run(args: argparse.Namespace) -> int:
    import faust

    from model.release import ReleaseError

    settings = settings_from_args(args)
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
