"""The trainer's CPU priority: `mindstream train` and `mindstream retrain` run beside the workers, on their cores
when they share a host, and yield those cores to them.

The niceness is applied by `stream/cli.py` before the command's module is imported: torch and the rest take about
2 s of CPU to import, which would otherwise run at the workers' priority. Where the kernel schedules by session
first (autogroup: /proc/sys/kernel/sched_autogroup_enabled, on in many distributions), niceness ranks a process
only against its own session's, and a job in a session of its own (cron's, `setsid`'s) would still get as much
CPU as a worker in another; such a job, alone in its session, gives the session's group its niceness too. One
that shares a session (a shell's, make's) leaves the group alone, which would lower its neighbours too. Across
containers neither reaches: docker-compose gives the trainer a cgroup weight (`cpu_shares`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from model.settings import add_flags, setting

# niceness 10: CFS weight 110 against a worker's 1024, about a tenth of a core the worker also wants
TRAIN_NICE = 10
MAX_NICE = 19  # os.nice's ceiling; a negative value needs privileges a training job has no reason to hold
COMMANDS = ("train", "retrain")  # the commands that run at this priority


def niceness(text: str) -> int:
    """A --nice value: an int 0..19."""
    value = int(text)
    if not 0 <= value <= MAX_NICE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a niceness 0..{MAX_NICE}")
    return value


@dataclass(frozen=True)
class Priority:
    nice: int = setting(TRAIN_NICE, "niceness added to the process (os.nice), from its start: workers on the same "
                        "cores run first; 0 = none", parse=niceness)


def lower_priority(nice: int) -> None:
    """Add `nice` to this process's niceness (and, alone in its session, its autogroup's); it cannot be taken
    back unprivileged."""
    if not nice:
        return
    value = os.nice(nice)
    if os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):  # no autogroup in this kernel
            Path("/proc/self/autogroup").write_text(str(value))


def autogroup_nice() -> int | None:
    """The niceness of this process's session group (autogroup), or None where it has none: a kernel without
    autogroup, or a session in the default group (the file then reads empty, as on some CI hosts)."""
    try:
        fields = Path("/proc/self/autogroup").read_text().split()
    except OSError:
        return None
    return int(fields[-1]) if fields else None


class _Unparsed(Exception):
    pass


class _Quiet(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Unparsed(message)


def apply(argv: list[str]) -> None:
    """The --nice of a command line (else its variable, else the default) applied now. A bad value is left to the
    command's own parser, which reports it in one line before the command runs."""
    parser = _Quiet(add_help=False, allow_abbrev=False)
    try:
        add_flags(parser, Priority)
        nice = parser.parse_known_args(argv)[0].nice
    except (ValueError, _Unparsed):
        return
    lower_priority(nice)
