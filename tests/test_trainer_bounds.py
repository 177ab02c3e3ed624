"""The trainer's thread and priority bounds (TrainConfig.threads, model/train.py; model/priority.py): `mindstream
train` and `mindstream retrain` run their whole job with the torch threads and the niceness they were given, by flag, by
variable or by default; a bad value is one line. What the bounds buy in latency is docs/benchmarks/
retrain_beside.md's (bench/retrain_beside.py), not a test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from infra.broker import EmbeddedBroker
from infra.processes import REPO
from model.priority import MAX_NICE, TRAIN_NICE, autogroup_nice
from model.train import TRAIN_THREADS, TrainConfig, train_release
from stream.cli import main

TINY = ["--d", "8", "--K", "2", "--max-len", "10", "--hidden", "16", "--profile-dim", "4", "--epochs", "1", "--quiet"]

# Runs a command in this fresh process with spies (the real functions run) that note, where the job exports,
# trains and writes its release, torch's intra-op threads, the process's niceness and the index build's threads.
SPY = """
import json, os, sys, torch
import model.release, model.train, stream.commands.retrain as retrain_command
from model.priority import autogroup_nice
seen = []
def spy(module, name):
    real = getattr(module, name)
    def noted(*args, **kwargs):
        seen.append({"at": name, "threads": torch.get_num_threads(), "nice": os.nice(0),
                     "index_threads": kwargs.get("index_threads"),
                     "autogroup": autogroup_nice()})
        return real(*args, **kwargs)
    setattr(module, name, noted)
spy(retrain_command, "read_clicks"); spy(model.train, "_fit"); spy(model.release, "write_release")
from stream.cli import main
code = main(sys.argv[1:])
print("SEEN " + json.dumps(seen))
sys.exit(code)
"""


def tiny_dataset(path: Path) -> Path:
    path.write_text("user_id,item_id,ts\n" + "".join(f"u{u},i{(u * 3 + k) % 17},{k}\n"
                                                    for u in range(40) for k in range(8)))
    return path


def run_spied(args: list[str], env: dict[str, str], own_session: bool = False) -> list[dict]:
    environ = {k: v for k, v in os.environ.items() if k not in ("MINDSTREAM_THREADS", "MINDSTREAM_NICE")}
    proc = subprocess.run([sys.executable, "-c", SPY, *args], cwd=REPO, env={**environ, **env},
                          capture_output=True, text=True, timeout=600, start_new_session=own_session)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("SEEN "))
    return json.loads(line[len("SEEN "):])


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        yield b


def default_threads() -> int:
    """torch's own default in a fresh process (one per core), what --threads 0 leaves."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, check=True, env={k: v for k, v in os.environ.items()
                                                                           if k != "OMP_NUM_THREADS"})
    return int(out.stdout)


@pytest.mark.parametrize(("flags", "env", "threads", "nice"), [
    ([], {}, TRAIN_THREADS, TRAIN_NICE),
    (["--threads", "3", "--nice", "4"], {}, 3, 4),
    ([], {"MINDSTREAM_THREADS": "2", "MINDSTREAM_NICE": "0"}, 2, 0),
    (["--threads", "0", "--nice", "0"], {}, None, 0),
], ids=["defaults", "flags", "variables", "unbounded"])
def test_retrain_runs_its_whole_job_with_the_bounds_it_was_given(broker: EmbeddedBroker, tmp_path: Path,
                                                                 flags: list[str], env: dict, threads: int | None,
                                                                 nice: int) -> None:
    base = tiny_dataset(tmp_path / "base.csv")
    seen = run_spied(["retrain", "--models", str(tmp_path / "models"), "--bootstrap", broker.bootstrap,
                      "--base", str(base), "--no-announce", *TINY, *flags], env)
    assert [s["at"] for s in seen] == ["read_clicks", "_fit", "write_release"]
    expected_threads = threads if threads is not None else default_threads()
    expected_nice = min(MAX_NICE, os.nice(0) + nice)  # niceness adds to the parent's (pytest may run niced)
    # the export runs niced too; torch's threads are the job's from training to the index build
    assert [s["nice"] for s in seen] == [expected_nice] * 3
    assert [s["threads"] for s in seen[1:]] == [expected_threads] * 2
    assert seen[2]["index_threads"] == (threads or -1)
    # sharing pytest's session, it leaves the session's scheduling group (autogroup) as it was
    assert {s["autogroup"] for s in seen} == {autogroup_nice()}


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroup in this kernel")
def test_a_retrain_alone_in_its_session_lowers_the_session_too(broker: EmbeddedBroker, tmp_path: Path) -> None:
    # as cron starts it: niceness inside an autogroup ranks only against that session's processes
    base = tiny_dataset(tmp_path / "base.csv")
    seen = run_spied(["retrain", "--models", str(tmp_path / "models"), "--bootstrap", broker.bootstrap,
                      "--base", str(base), "--no-announce", *TINY, "--nice", "7"], {}, own_session=True)
    expected = min(MAX_NICE, os.nice(0) + 7)
    assert [(s["nice"], s["autogroup"]) for s in seen] == [(expected, expected)] * 3


def test_train_command_runs_with_the_default_bounds(tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data.csv")
    seen = run_spied(["train", "--data", str(data), "--out", str(tmp_path / "models"), *TINY], {})
    assert [s["at"] for s in seen] == ["_fit", "write_release"]
    assert {(s["threads"], s["nice"]) for s in seen} == {(TRAIN_THREADS, min(MAX_NICE, os.nice(0) + TRAIN_NICE))}
    manifest = json.loads(next((tmp_path / "models").glob("*/manifest.json")).read_text())
    assert manifest["train_config"]["threads"] == TRAIN_THREADS


# Notes the niceness when torch is first imported, then runs the command line.
BEFORE_IMPORTS = """
import os, sys
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("NICE_AT_TORCH_IMPORT", os.nice(0), flush=True)
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, Hook())
from stream.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_the_priority_applies_before_the_command_imports_torch(command: str) -> None:
    # importing torch and the rest is ~2 s of CPU, which would run at the workers' priority
    proc = subprocess.run([sys.executable, "-c", BEFORE_IMPORTS, command, "--nice", "6", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("NICE_AT_TORCH_IMPORT"))
    assert int(line.split()[1]) == min(MAX_NICE, os.nice(0) + 6)


def test_train_release_bounds_threads_for_the_job_and_puts_them_back(tmp_path: Path, monkeypatch) -> None:
    import model.release

    during: list[int] = []
    real = model.release.write_release

    def noted(*args, **kwargs):
        during.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(model.release, "write_release", noted)
    before = torch.get_num_threads()
    wanted = before + 1
    from model.mind import MINDConfig

    train_release(tiny_dataset(tmp_path / "data.csv"), tmp_path / "models",
                  MINDConfig(d=8, K=2, max_len=10, hidden=(16,), profile_dim=4),
                  TrainConfig(epochs=1, threads=wanted, progress=False))
    assert during == [wanted]
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--nice", "20"], {}, "argument --nice: '20' is not a niceness 0..19"),
    (["--nice", "-1"], {}, "argument --nice: '-1' is not a niceness 0..19"),
    (["--threads", "-2"], {}, "argument --threads: '-2' is not a thread count (0 or more)"),
    ([], {"MINDSTREAM_NICE": "25"}, "MINDSTREAM_NICE: '25' is not a niceness 0..19"),
    ([], {"MINDSTREAM_THREADS": "many"}, "MINDSTREAM_THREADS='many' is not thread_count"),
])
@pytest.mark.parametrize("command", ["train", "retrain"])
def test_a_bad_bound_is_one_line(command: str, argv: list[str], env: dict, message: str, monkeypatch,
                                 capsys, tmp_path: Path) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    required = ["--data", "x"] if command == "train" else []
    try:
        code = main([command, *required, "--out" if command == "train" else "--models", str(tmp_path), *argv])
    except SystemExit as e:  # argparse's exit for a bad flag
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "CURRENT").exists()
