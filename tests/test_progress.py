"""Progress output (model/progress.py): a bar only when stderr is a terminal; in a log, one line per epoch and
per phase. The demo run with its output to a file, as `make demo > demo.log 2>&1` does, leaves no carriage
return in it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from model.progress import Progress
from tests.conftest import REPO


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drive(out: io.StringIO, enabled: bool = True) -> str:
    with Progress("replaying", total=500, unit="ev", enabled=enabled, file=out) as p:
        for n in range(500):
            p.update()
            p.status(n=n)
            if n == 250:
                p.line("halfway")
    return out.getvalue()


def test_a_log_gets_one_line_per_phase_and_no_carriage_return() -> None:
    text = drive(io.StringIO())
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "halfway" and lines[1].startswith("replaying: 500 ev in ") and len(lines) == 2


def test_a_terminal_gets_the_bar() -> None:
    text = drive(Terminal())
    assert "\r" in text and "replaying" in text and "500/500" in text and "halfway" in text


def test_quiet_prints_nothing() -> None:
    assert drive(io.StringIO(), enabled=False) == ""
    assert drive(Terminal(), enabled=False) == ""


def test_a_failed_phase_prints_no_summary() -> None:
    out = io.StringIO()
    try:
        with Progress("producing", unit="ev", file=out) as p:
            p.update()
            raise ConnectionError("broker gone")
    except ConnectionError:
        pass
    assert out.getvalue() == ""  # the command's one-line error is what the user reads


def run_to_file(args: list[str], log: Path, timeout_s: float = 600) -> tuple[int, str]:
    """`mindstream ARGS > LOG 2>&1`"""
    with log.open("wb") as f:
        rc = subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                            timeout=timeout_s, env={**os.environ, "DATA": "", "MINDSTREAM_DEBUG": ""}).returncode
    return rc, log.read_text()


def test_train_to_a_file_prints_a_line_per_epoch(tmp_path: Path) -> None:
    data = tmp_path / "clicks.csv"
    data.write_text("user_id,item_id,ts\n" + "".join(f"u{u},i{(u * 7 + t) % 30},{t}\n"
                                                     for u in range(40) for t in range(8)))
    rc, text = run_to_file(["train", "--data", str(data), "--out", str(tmp_path / "models"), "--epochs", "3",
                            "--patience", "5", "--d", "8", "--max-len", "8", "--hidden", "16", "--threads", "1"],
                           tmp_path / "train.log")
    assert rc == 0, text[-3000:]
    assert "\r" not in text
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss " in line and "valid HR@50 " in line for line in epochs)
    assert sum(line.startswith("training: ") for line in text.splitlines()) == 1


def test_demo_output_to_a_file_has_no_carriage_return(tmp_path: Path) -> None:
    """The whole demo (simulator file, training, worker, replay) on its smallest budget, stdout and stderr to a
    file: each phase is one line, each epoch one line."""
    rc, text = run_to_file(["demo", "--workdir", str(tmp_path / "demo"), "--epochs", "1", "--events", "150",
                            "--users", "15", "--rate", "0", "--show", "1"], tmp_path / "demo.log")
    assert rc == 0, text[-3000:]
    assert "\r" not in text, [line for line in text.split("\n") if "\r" in line][:3]
    lines = text.splitlines()
    assert sum(line.startswith("writing clicks.jsonl: ") for line in lines) == 1  # the simulator's file
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1/1"]
    assert sum(line.startswith("training: ") for line in lines) == 1
    assert sum(line.startswith("producing to clicks: 150 ev in ") for line in lines) == 1  # the replay
    assert len(lines) < 60, text
