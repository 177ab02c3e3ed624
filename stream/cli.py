"""`mindstream`: the one command-line entry point.

Each subcommand lives in the module that does the work; that module exposes
`configure(parser)` (its flags, with defaults from the environment) and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules are imported only when their command is used.
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("infra.broker_cli", "run the embedded Kafka-protocol broker (Tansu) on loopback"),
    "simulate": ("stream.simulate", "write a seeded synthetic multi-interest click stream (JSONL)"),
    "produce": ("stream.produce", "replay a dataset or the simulator onto the clicks topic"),
    "candidates": ("stream.candidates", "print the candidate lists published per user"),
    "train": ("model.train", "train MIND on a dataset and write a model release (models/<version>, CURRENT)"),
    "explain": ("model.explain", "heatmap of a user's routing coupling coefficients (behaviors x interests)"),
    "eval": ("model.evaluate", "offline comparison of mostpop, itemcf and the neural towers (HR@N, NDCG@50)"),
    "worker": ("stream.worker", "run the Faust worker: interest agent (clicks -> interests) and recall agent"),
    "retrain": ("stream.retrain", "daily job: recent clicks from Kafka -> new release -> announce it (hot swap)"),
    "refresh": ("stream.refresh", "recompute every user with stored behaviors with the served model (bounded rate)"),
    "rollback": ("stream.rollback", "make the release before the current one current again and announce it"),
    "demo": ("stream.demo", "broker, trained model, worker, replayed clicks, fresh candidates: end to end"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mindstream",
        description="Streaming multi-interest recommendation (MIND) on Kafka, Faust, ONNX Runtime and hnswlib.",
    )
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
    args = build_parser(argv).parse_args(argv)
    from stream.kafka_security import KafkaSecurityError

    try:
        return int(args._run(args) or 0)
    except KafkaSecurityError as e:  # a configuration mistake: the message says which variable to fix
        print(f"mindstream {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
