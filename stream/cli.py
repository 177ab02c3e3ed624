"""`mindstream`: the one command-line entry point.

Each subcommand lives in the module that does the work; that module exposes
`configure(parser)` (its flags, with defaults from the environment) and `run(args) -> int`.

An expected failure (stream/errors.py: bad data, a missing file or release, an unreachable broker, a bad
flag or environment value) is one line on stderr, `mindstream <command>: <message>`, and exit status 2.
`--debug` (anywhere on the command line) or MINDSTREAM_DEBUG=1 shows its traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from model import priority

# name -> (module, one-line help). Modules are imported only when their command is used.
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("infra.broker_cli", "run the embedded Kafka-protocol broker (Tansu) on loopback"),
    "simulate": ("stream.commands.simulate", "write a seeded synthetic multi-interest click stream (JSONL)"),
    "produce": ("stream.commands.produce", "replay a dataset or the simulator onto the clicks topic"),
    "candidates": ("stream.commands.candidates", "print the candidate lists published per user"),
    "train": ("model.train", "train MIND on a dataset and write a model release (models/<version>, CURRENT)"),
    "explain": ("model.explain", "heatmap of a user's routing coupling coefficients (behaviors x interests)"),
    "eval": ("model.evaluate", "offline comparison of mostpop, itemcf and the neural towers (HR@N, NDCG@50)"),
    "worker": ("stream.worker.main", "run the Faust worker: interest agent (clicks -> interests) and recall agent"),
    "retrain": ("stream.commands.retrain",
                "daily job: recent clicks from Kafka -> new release -> announce it (hot swap)"),
    "refresh": ("stream.commands.refresh",
                "recompute every user with stored behaviors with the served model (bounded rate)"),
    "rollback": ("stream.commands.rollback", "make the release before the current one current again and announce it"),
    "demo": ("stream.commands.demo", "broker, trained model, worker, replayed clicks, fresh candidates: end to end"),
}


DEBUG_ENV = "MINDSTREAM_DEBUG"

# Commands whose process serves clicks. numpy's BLAS (OpenBLAS in numpy's wheels) would run the small products of a
# search (model/ann.py ExactHead) on a thread per core, and its threads spin for a while after each product: 3.6 ms
# of CPU per 4-interest search, against 0.8 on one thread, taken from the cores the broker and the other workers
# need. The libraries read these variables when they load, so they are set before the command's imports.
ONE_BLAS_THREAD = ("worker",)
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread() -> None:
    """Let numpy's BLAS, when it loads, use one thread; a value already in the environment stands."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: argparse's own prints the whole usage first."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = Parser(
        prog="mindstream",
        description="Streaming multi-interest recommendation (MIND) on Kafka, Faust, ONNX Runtime and hnswlib.",
    )
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an expected failure (also after COMMAND; env {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        # Only the chosen command's module is imported: `mindstream --help` stays fast.
        if name == wanted:
            mod = importlib.import_module(module)
            mod.configure(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    from stream.errors import expected_message

    wanted = next((a for a in argv if not a.startswith("-")), "")
    if wanted in priority.COMMANDS:  # before the command's imports, seconds of CPU at the workers' priority
        priority.apply(argv)
    if wanted in ONE_BLAS_THREAD:
        one_blas_thread()
    try:
        parser = build_parser(argv)
    except ValueError as e:  # configure() reads flag defaults from the environment
        if debug:
            raise
        print(f"mindstream {wanted}: an environment variable holds a bad value: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except Exception as e:
        message = None if debug else expected_message(e, args)
        if message is None:
            raise
        print(f"mindstream {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
