"""The processes the project starts beside itself: how one is stopped, and `mindstream worker` as a subprocess
(what the tests, the benchmarks and `make demo` run). Nothing here imports `stream`: the worker is configured
by its command-line flags."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from infra.broker import free_port
from infra.measure import rss_bytes

REPO = Path(__file__).resolve().parents[1]


def stop_process(proc: subprocess.Popen, timeout_s: float) -> int:
    """SIGTERM, then SIGKILL if it has not exited after `timeout_s`; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class WorkerProcess:
    """One `mindstream worker` subprocess serving the release under `models_dir` (or the `--release` in `args`),
    with its state in `state_dir` and its web server on `web_port` (default: a free one), in a session of its own
    so that a signal reaches it alone; stdout and stderr go to `log_path`. `args` are further worker flags; `env`
    is added to this process's environment; `python_args` go to the interpreter before `-m stream.cli` (a profiler:
    `("-m", "bench.cpu_profile", path)`); `repo` is the checkout whose code it runs (another commit's worktree, to
    compare two versions side by side)."""

    def __init__(self, name: str, log_path: Path, bootstrap: str, state_dir: Path, models_dir: Path | None = None,
                 web_port: int | None = None, args: Sequence[str] = (), env: dict[str, str] | None = None,
                 python_args: Sequence[str] = (), repo: Path = REPO) -> None:
        self.name = name
        self.log_path = log_path
        self.web_port = web_port if web_port is not None else free_port()
        state_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level of its data directory
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # absolute: the worker runs in the repository, the caller may not
        flags = ["--bootstrap", bootstrap, "--state-dir", str(state_dir.resolve()), "--web-port", str(self.web_port),
                 *(("--models-dir", str(models_dir.resolve())) if models_dir is not None else ()), *args]
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, *python_args, "-m", "stream.cli", "worker", *flags],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=repo, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            tail = self.log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}; log {self.log_path}:\n{tail}")

    def metrics(self) -> str:
        """The worker's Prometheus text; OSError while its web server is not up."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def serving(self) -> bool:
        """The worker's web server answers (the release is loaded and the app started; the consumer group may
        still be joining)."""
        try:
            self.metrics()
            return True
        except OSError:
            return False

    def wait_metrics(self, lines: list[str], timeout_s: float) -> str:
        """The metrics text once it holds every one of `lines`; RuntimeError if the worker exits or the timeout
        passes first."""
        text = ""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError):  # not serving yet
                text = self.metrics()
            if all(line in text.splitlines() for line in lines):
                return text
            time.sleep(0.3)
        raise RuntimeError(f"worker {self.name}: metrics never showed {lines}:\n{text}\n"
                           f"{self.log_path.read_text(errors='replace')[-3000:]}")

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def kill(self) -> int:
        """SIGKILL: no shutdown, no offset commit, no flush (what a crash or an OOM kill does); returns the exit
        status."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (Faust shuts down cleanly, commits offsets), then SIGKILL after `timeout_s`; returns the exit
        status."""
        code = stop_process(self.proc, timeout_s)
        self._log.close()
        return code


def wait_until(predicate: Callable[[], bool], timeout_s: float, workers: Sequence[WorkerProcess] = (),
               poll_s: float = 0.5) -> bool:
    """Poll `predicate` until true or `timeout_s` (a failure bound, never the thing measured); fails at once if a
    worker that should be running exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            w.check_alive()
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()
