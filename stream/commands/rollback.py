"""`mindstream rollback`: serve the release before the current one again.

    mindstream rollback --models models/ [--to VERSION] [--bootstrap host:port]

"Before" is by the manifests' created_ts: each rollback steps one release further back (rolling back twice
from v3 serves v1). The target is verified with load_release before anything changes, then models/CURRENT
is pointed at it (workers started later load it) and it is announced on `model-releases` (running workers
hot-swap to it, stream/worker/hotswap.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.release import ReleaseError, current_release_dir, load_release, set_current
from model.settings import add_flags
from stream.commands.announce import announcement_for, publish, releases_by_age
from stream.config import Settings
from stream.topology import MODEL_RELEASES


def previous_version(models_dir: str | Path) -> str:
    """The version created just before the one models/CURRENT names."""
    current = current_release_dir(models_dir).name
    ordered = releases_by_age(models_dir)
    versions = [v for _, v in ordered]
    if current not in versions:
        raise ReleaseError(f"{models_dir}: CURRENT names {current!r}, which has no readable manifest")
    at = versions.index(current)
    if at == 0:
        raise ReleaseError(f"{models_dir}: {current} is the oldest release; nothing to roll back to")
    return versions[at - 1]


def rollback(models_dir: str | Path, bootstrap: str, topic: str, to: str | None = None) -> str:
    """Make `to` (default: the previous release) current and announce it; returns its version."""
    target = to or previous_version(models_dir)
    release = load_release(Path(models_dir) / target)  # never announce what a worker would reject
    set_current(models_dir, release.version)
    publish(bootstrap, topic, announcement_for(release.path))
    return release.version


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    add_flags(parser, Settings, ["models_dir"])
    parser.add_argument("--to", default=None, help="roll back to this version instead of the previous one")
    add_flags(parser, Settings, ["bootstrap", "topic_prefix"])


def run(args: argparse.Namespace) -> int:
    before = current_release_dir(args.models_dir).name
    version = rollback(args.models_dir, args.bootstrap, args.topic_prefix + MODEL_RELEASES.name, args.to)
    print(f"rolled back {before} -> {version}; announced on {args.topic_prefix + MODEL_RELEASES.name}")
    return 0
