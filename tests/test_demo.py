"""`mindstream demo` (`make demo`) itself, as a subprocess in a temporary directory with a small budget: it trains,
starts the embedded broker and a worker, replays clicks and prints candidates for the users it shows; and
everything it started is gone after it exits, normally or on Ctrl-C (SIGINT) in the middle of the replay.

The demo's children are found while it runs with `pgrep -P` (the broker and the worker run in sessions of their
own, so they are not in its process group); after it exits, none of them may be alive.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stream.commands.simulate import ClickSimulator, SimConfig, write_jsonl

REPO = Path(__file__).resolve().parents[1]
# a catalog that trains in seconds: the budget is small, the pipeline is the real one
SIM = SimConfig(n_users=150, n_items=300, n_categories=8, clicks_per_user=15)


class Demo:
    """`mindstream demo ARGS` with output to a file, its descendants recorded every 0.2 s while it runs."""

    def __init__(self, workdir: Path, data: Path, *args: str) -> None:
        self.out = workdir.parent / f"{workdir.name}-{len(list(workdir.parent.glob('*.out')))}.out"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("KAFKA_BOOTSTRAP", None)  # the embedded broker, started and stopped by the demo
        with self.out.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream.cli", "demo", "--workdir", str(workdir), "--data", str(data),
                 "--epochs", "1", "--show", "2", "--top", "3", *args],
                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                # a shell gives a background job SIGINT ignored, and a child keeps that; the user at a terminal,
                # whom this test plays, has Ctrl-C delivered
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.seen: dict[int, str] = {}  # pid -> command line
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._done.is_set() and self.proc.poll() is None:
            frontier = [self.proc.pid]
            while frontier:
                found = subprocess.run(["pgrep", "-P", ",".join(map(str, frontier))], capture_output=True,
                                       text=True).stdout.split()
                frontier = [int(p) for p in found if int(p) not in self.seen]
                for pid in frontier:
                    self.seen[pid] = cmdline(pid)
            time.sleep(0.2)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_output(self, pattern: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if re.search(pattern, self.output(), re.M):
                return
            assert self.proc.poll() is None, f"demo exited {self.proc.returncode} before {pattern!r}:\n{self.output()}"
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} after {timeout_s:.0f} s:\n{self.output()[-3000:]}")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._done.set()
            self._watcher.join(10)

    def kill(self) -> None:
        """Test clean-up only: whatever is left is killed, so that one failure does not leak into the next test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in alive(self.seen):
            os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pids: dict[int, str]) -> list[int]:
    """The pids still running the same program (a pid reused by another program does not count), zombies not."""
    out = []
    for pid, command in pids.items():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and cmdline(pid) == command:
            out.append(pid)
    return out


def assert_children_stopped(demo: Demo) -> None:
    commands = list(demo.seen.values())
    assert any("tansu" in c or "broker" in c for c in commands), f"the broker was never seen: {commands}"
    assert any("stream.cli worker" in c for c in commands), f"no worker was seen: {commands}"
    # exited and reaped: pgrep finds no child of the demo's pid, and no pid seen is still alive
    time.sleep(0.5)
    assert alive(demo.seen) == [], {pid: demo.seen[pid] for pid in alive(demo.seen)}
    left = subprocess.run(["pgrep", "-P", str(demo.proc.pid)], capture_output=True, text=True).stdout
    assert left == ""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo-data") / "clicks.jsonl"
    sim = ClickSimulator(SIM)
    write_jsonl(sim.events(), path, total=sim.expected_events(), progress=False)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo") / "work"


def test_demo_runs_end_to_end_and_leaves_no_process(dataset: Path, workdir: Path) -> None:
    demo = Demo(workdir, dataset, "--events", "150", "--users", "8", "--rate", "200")
    try:
        assert demo.wait(600) == 0, demo.output()[-4000:]
        out = demo.output()
        shown = re.findall(r"^user (\S+): last clicks ", out, re.M)
        assert len(shown) == 2, out[-3000:]
        for user in shown:
            # the candidates line of that user: its model version and a non-empty list
            assert re.search(rf"^  user {re.escape(user)}  model \S+  .*\[(\d+) items\]$", out, re.M), out[-3000:]
        assert "no candidate list yet" not in out
        assert re.search(r"^\d+ lists for \d+ clicks: p50 ", out, re.M), out[-2000:]
        assert_children_stopped(demo)
    finally:
        demo.kill()


def test_demo_interrupted_mid_replay_stops_everything(dataset: Path, workdir: Path) -> None:
    # the release the first test trained is reused; a slow replay, so that SIGINT comes in the middle of it
    demo = Demo(workdir, dataset, "--reuse-model", "--events", "3000", "--users", "100", "--rate", "20")
    try:
        demo.wait_output(r"^== replaying ", 300)
        time.sleep(2)
        assert demo.proc.poll() is None, "the demo ended before the interrupt"
        demo.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends, to the demo's process only
        assert demo.wait(120) == 130, demo.output()[-3000:]
        assert "interrupted: everything started was stopped" in demo.output()
        assert_children_stopped(demo)
    finally:
        demo.kill()
