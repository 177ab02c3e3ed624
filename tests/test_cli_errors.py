"""What a user meets when a command cannot do its job: one line on stderr, `mindstream <command>: <message>`,
exit status 2, and no traceback (stream/errors.py, caught in stream.cli.main); `--debug` or MINDSTREAM_DEBUG=1
shows the traceback. Every command runs as a subprocess, the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: a broker that cannot be reached


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "MINDSTREAM_DEBUG": "", **(env or {})})


def finish(proc: subprocess.Popen, timeout_s: float = 240) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err


def assert_one_line(rc: int, err: str, command: str, *fragments: str) -> None:
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith(f"mindstream {command}: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture
def bad_csv(tmp_path: Path) -> Path:
    path = tmp_path / "clicks.csv"
    path.write_text("user_id,item_id,ts\nu1,i1,1\nu1,i2,notanumber\nu2,i1,3\n")
    return path


def test_the_failing_commands_of_a_fresh_clone_print_one_line(tmp_path: Path, bad_csv: Path) -> None:
    """A missing data file, bad data and an unreachable broker, each one line on stderr (started together: the
    broker ones wait out the client's bootstrap timeout, 30 s)."""
    runs = {
        "missing data": (start("train", "--data", "/nonexistent", "--out", str(tmp_path / "models")),
                         "train", ["/nonexistent: no such file or directory"]),
        "bad data": (start("train", "--data", str(bad_csv), "--out", str(tmp_path / "models")),
                     "train", [f"{bad_csv}:3: `ts` is not a number: 'notanumber'"]),
        "produce, no broker": (start("produce", "--simulate", "--limit", "5", "--bootstrap", UNREACHABLE),
                               "produce", [f"cannot reach a Kafka broker at {UNREACHABLE}", "KAFKA_BOOTSTRAP"]),
        "candidates, no broker": (start("candidates", "--bootstrap", UNREACHABLE, "--user", "u1"),
                                  "candidates", [f"cannot reach a Kafka broker at {UNREACHABLE}", "KAFKA_BOOTSTRAP"]),
        # the address named is the one tried, from the environment too
        "KAFKA_BOOTSTRAP": (start("candidates", "--user", "u1", env={"KAFKA_BOOTSTRAP": UNREACHABLE}), "candidates",
                            [f"at {UNREACHABLE} (--bootstrap or KAFKA_BOOTSTRAP)"]),
    }
    for proc, command, fragments in runs.values():
        rc, err = finish(proc)
        assert_one_line(rc, err, command, *fragments)


def test_missing_release_bad_flags_and_bad_environment(tmp_path: Path, bad_csv: Path) -> None:
    runs = [
        (start("worker", "--models-dir", str(tmp_path / "no-models")), "worker",
         ["no release to serve", "no-models/CURRENT"]),
        (start("explain", "--models", str(tmp_path / "no-models"), "--data", str(bad_csv), "--user", "u1"),
         "explain", ["no-models/CURRENT", "mindstream train"]),
        (start("train", "--data", str(bad_csv), "--epochs", "many"), "train",
         ["argument --epochs: invalid int value: 'many'", "mindstream train --help"]),
        (start("candidates", "--top", "0", "--bootstrap", UNREACHABLE), "candidates", ["--top must be >= 1"]),
        (start("refresh", "--rate", "0", "--bootstrap", UNREACHABLE), "refresh", ["--rate must be > 0"]),
        (start("eval", "--data", str(bad_csv), "--methods", "mind_k,bogus"), "eval", ["unknown methods ['bogus']"]),
        (start("train", "--data", str(bad_csv), env={"MINDSTREAM_EPOCHS": "abc"}), "train",
         ["MINDSTREAM_EPOCHS='abc' is not int"]),
        (start("produce", "--simulate", env={"MINDSTREAM_PARTITIONS": "twelve"}), "produce",
         ["MINDSTREAM_PARTITIONS='twelve' is not int"]),
        (start("produce", "--simulate", "--sim-users", "0", "--bootstrap", UNREACHABLE), "produce",
         ["n_users and clicks_per_user must be positive"]),
    ]
    for proc, command, fragments in runs:
        rc, err = finish(proc)
        assert_one_line(rc, err, command, *fragments)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path: Path, how: str) -> None:
    args = ["train", "--data", "/nonexistent", "--out", str(tmp_path)]
    proc = start(*args, "--debug") if how == "flag" else start(*args, env={"MINDSTREAM_DEBUG": "1"})
    rc, err = finish(proc)
    assert rc != 0 and "Traceback" in err and "DataError: /nonexistent: no such file or directory" in err
