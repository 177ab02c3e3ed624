"""The worker's numpy runs its BLAS on one thread (stream/cli.py `one_blas_thread`): the exact head's products are
small, and a BLAS thread per core spins after each one on the cores the broker and other workers need. The
libraries read the variable when numpy loads, so it must be set before the first `import numpy`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infra.processes import REPO

# Prints OPENBLAS_NUM_THREADS as numpy is first imported, then runs the command line (which then fails on its
# missing input, after its imports).
AT_NUMPY_IMPORT = """
import os, sys
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            print("AT_NUMPY_IMPORT", os.environ.get("OPENBLAS_NUM_THREADS", "unset"), flush=True)
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, Hook())
from stream.cli import main
sys.exit(main(sys.argv[1:]))
"""


MISSING = {"worker": ["--models-dir", "no-such-models", "--bootstrap", "127.0.0.1:1"],
           "train": ["--data", "no-such-dataset"], "eval": ["--data", "no-such-dataset"]}


def blas_threads_at_numpy_import(command: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", AT_NUMPY_IMPORT, command, *MISSING[command]], cwd=REPO,
                          env={**environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no " in proc.stderr, proc.stderr[-2000:]  # the one-line error, not a crash
    return next(x for x in proc.stdout.splitlines() if x.startswith("AT_NUMPY_IMPORT")).split()[1]


def test_the_worker_loads_numpy_with_one_blas_thread() -> None:
    assert blas_threads_at_numpy_import("worker") == "1"


def test_an_operators_value_stands() -> None:
    assert blas_threads_at_numpy_import("worker", OPENBLAS_NUM_THREADS="2") == "2"


@pytest.mark.parametrize("command", ["train", "eval"])
def test_the_offline_commands_keep_every_blas_thread(command: str) -> None:
    # evaluation scores whole catalogs with large products, where the threads pay
    assert blas_threads_at_numpy_import(command) == "unset"
