"""The paper's offline comparison in one harness (`make eval`, `mindstream eval --data PATH [--data PATH ...]`).

Every method sees the same leave-one-out split and the metrics of model/metrics.py. The neural
methods (YouTube DNN, MIND with K=1, MIND with K interests) share one budget and one selection
rule: the same MINDConfig (d, max_len, negatives, H-layer) apart from what defines the method, the
same TrainConfig (epochs, patience, learning rate, batch) and early stopping on validation HR@50;
each is trained with several seeds and reported as mean ± std of the test metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from model.baselines import ItemCF, MostPop
from model.data import Split, Vocab, leave_one_out, load_dataset
from model.metrics import evaluate_scorer
from model.mind import MINDConfig
from model.train import TrainConfig, build_model, evaluate, fit, resolve_device

METHODS = ("mostpop", "itemcf", "youtube_dnn", "mind_1", "mind_k")
METRICS = ("HR@10", "HR@50", "HR@100", "NDCG@50")
SEEDS = 3
OUT_DIR = Path("docs/results")


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` strings -> MINDConfig fields, values typed like the field's default."""
    fields = MINDConfig.__dataclass_fields__
    defaults = MINDConfig()
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in fields or key == "extra":
            raise ValueError(f"--set expects MINDConfig field=value, got {pair!r} (fields: {', '.join(fields)})")
        current = getattr(defaults, key)
        if isinstance(current, bool):
            value = raw.lower() in ("1", "true", "yes")
        elif isinstance(current, tuple):
            value = tuple(int(v) for v in raw.split(",") if v.strip())
        elif isinstance(current, float):
            value = float(raw)
        else:
            value = type(current)(raw)
        out[key] = value
    return out


def method_config(method: str, base: MINDConfig) -> tuple[str, MINDConfig]:
    """(model kind, config) of a neural method; only what defines the method differs from `base`."""
    if method == "youtube_dnn":
        return "youtube_dnn", base
    if method == "mind_1":
        return "mind", replace(base, K=1)
    if method == "mind_k":
        return "mind", base
    raise ValueError(f"not a neural method: {method!r}")


def _mean_std(runs: list[dict]) -> dict:
    out: dict = {}
    for key in runs[0]:
        values = np.asarray([r[key] for r in runs], dtype=np.float64)
        out[key] = float(values.mean())
        if key != "params":
            out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    out["seeds"] = len(runs)
    return out


def eval_baseline(method: str, split: Split) -> dict:
    t0 = time.perf_counter()
    model = MostPop(split) if method == "mostpop" else ItemCF(split)
    seconds = time.perf_counter() - t0
    # Deterministic methods: one run, std 0 (kept so every method has the same fields). They score
    # from the user's whole history (`*_exclude`), not the max_len window the towers see.
    test = evaluate_scorer(model.score, split.test_exclude, split.profile, split.test_target, split.test_exclude)
    valid = evaluate_scorer(model.score, split.valid_exclude, split.profile, split.valid_target, split.valid_exclude)
    return _mean_std([{**test, "valid_HR@50": valid["HR@50"], "train_seconds": seconds, "params": model.params}])


def train_one(method: str, split: Split, base: MINDConfig, train_cfg: TrainConfig, seed: int) -> dict:
    """Train one neural method with one seed; test metrics of the best validation epoch."""
    kind, cfg = method_config(method, base)
    torch.manual_seed(seed)
    model = build_model(kind, replace(cfg, routing_seed=seed), split)
    result = fit(model, split, replace(train_cfg, seed=seed))
    model.load_state_dict(result.state_dict)
    test = evaluate(model, split, "test")
    print(f"  {method} seed {seed}: test HR@50 {test['HR@50']:.4f} valid HR@50 {result.best_valid_hr50:.4f} "
          f"({result.train_seconds:.0f}s, best epoch {result.best_epoch})", flush=True)
    return {
        **test,
        "valid_HR@50": result.best_valid_hr50,
        "train_seconds": result.train_seconds,
        "epochs": result.best_epoch,
        "params": int(sum(p.numel() for p in model.parameters())),
    }


def _load_split(path: str | Path, max_len: int) -> tuple[dict, Split]:
    interactions = load_dataset(path)
    return interactions.summary(), leave_one_out(interactions, Vocab.build(interactions), max_len)


def _train_in_worker(path: str, method: str, base: MINDConfig, train_cfg: TrainConfig, seed: int, threads: int):
    # A worker process rebuilds the split from the file (deterministic, seconds) instead of
    # receiving ~100 MB of arrays through a pipe; its thread count keeps the cores from oversubscription.
    torch.set_num_threads(threads)
    return train_one(method, _load_split(path, base.max_len)[1], base, train_cfg, seed)


def evaluate_dataset(
    path: str | Path, methods: list[str], base: MINDConfig, train_cfg: TrainConfig, seeds: list[int], jobs: int = 1
) -> tuple[str, dict]:
    summary, split = _load_split(path, base.max_len)
    print(f"{summary['name']}: {summary['users']} users, {summary['items']} items, "
          f"{summary['interactions']} interactions, {len(split.train_target)} training samples", flush=True)
    results = {m: eval_baseline(m, split) for m in methods if m in ("mostpop", "itemcf")}
    tasks = [(m, seed) for m in methods if m not in results for seed in seeds]
    runs: dict[str, list[dict]] = {}
    if jobs > 1 and len(tasks) > 1:
        threads = max(1, (os.cpu_count() or 1) // min(jobs, len(tasks)))
        # spawn: CUDA cannot be used in forked children
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {t: pool.submit(_train_in_worker, str(path), t[0], base, train_cfg, t[1], threads) for t in tasks}
            for (method, _seed), future in futures.items():
                runs.setdefault(method, []).append(future.result())
    else:
        for method, seed in tasks:
            runs.setdefault(method, []).append(train_one(method, split, base, train_cfg, seed))
    for method in methods:
        if method in runs:
            results[method] = _mean_std(runs[method])
        r = results[method]
        print(f"{summary['name']} {method}: " + "  ".join(f"{m} {r[m]:.4f}±{r[m + '_std']:.4f}" for m in METRICS),
              flush=True)
    return summary["name"], {m: results[m] for m in methods}


# ----------------------------------------------------------------------------- reports


def machine_description(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores visible, torch {torch.__version__}"
    threads = torch.get_num_threads()
    if device.type == "cuda":
        return f"{text}, GPU {torch.cuda.get_device_name(device)}"
    return f"{text}, CPU training with {threads} torch threads"


def write_markdown(path: Path, results: dict, meta: dict) -> None:
    lines = [
        "# Offline evaluation",
        "",
        "Protocol: ../shared/data/README.md (leave-one-out; the target ranked against all items with the "
        "user's history removed; the model chosen on validation HR@50; test figures reported). "
        "Neural methods: mean ± std over the seeds; baselines are deterministic.",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- wall time: {meta['wall_seconds'] / 60:.1f} min",
        f"- seeds: {meta['seeds']}",
        f"- model config (shared by youtube_dnn, mind_1 (K=1), mind_k): `{json.dumps(meta['model_config'])}`",
        f"- training config: `{json.dumps(meta['train_config'])}`",
        "",
    ]
    for dataset, methods in results.items():
        lines += [
            f"## {dataset}",
            "",
            "| method | HR@10 | HR@50 | HR@100 | NDCG@50 | valid HR@50 | train s | params |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for method, r in methods.items():
            cells = [f"{r[m]:.4f} ± {r[m + '_std']:.4f}" for m in (*METRICS, "valid_HR@50")]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {r['train_seconds']:.0f} | {int(r['params']):,} |")
        lines.append("")
    if meta.get("plot"):
        lines += [f"![HR@50 per method]({meta['plot']})", ""]
    path.write_text("\n".join(lines))


def write_plot(path: Path, results: dict) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    datasets = list(results)
    methods = [m for m in METHODS if any(m in results[d] for d in datasets)]
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(2.2 + 2.2 * len(datasets), 3.6))
    for i, method in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(datasets))]
        ys = [results[d].get(method, {}).get("HR@50", math.nan) for d in datasets]
        err = [results[d].get(method, {}).get("HR@50_std", 0.0) for d in datasets]
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=method)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel("test HR@50")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compare mostpop, itemcf, youtube_dnn, mind_1 and mind_k on one or more datasets under the protocol of "
        "../shared/data/README.md; writes offline_eval.json, offline_eval.md and offline_eval.png to --out."
    )
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--data", action="append", required=True, help="dataset path (repeatable)")
    parser.add_argument("--out", default=str(OUT_DIR), help="directory for the reports")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds per neural method")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs, help="maximum epochs (early stopping)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a MINDConfig field for every neural method, e.g. --set K=8 (repeatable)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train the (method, seed) runs of a dataset in this many parallel processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from stream.errors import CommandError  # the command-line edge: main() prints it as one line

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CommandError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    try:
        base = replace(MINDConfig(), **parse_overrides(args.set))
    except ValueError as e:  # a bad --set
        raise CommandError(str(e)) from e
    train_cfg = TrainConfig(epochs=args.epochs, device=args.device, progress=not args.quiet)
    seeds = [train_cfg.seed + i for i in range(args.seeds)]
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    results = {}
    for path in args.data:
        name, res = evaluate_dataset(path, methods, base, train_cfg, seeds, args.jobs)
        results[name] = res
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "offline_eval.json").write_text(json.dumps(results, indent=2) + "\n")
    plot = "offline_eval.png" if write_plot(out / "offline_eval.png", results) else None
    meta = {
        "command": "mindstream eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["eval"] else "mindstream eval " + " ".join(f"--data {shlex.quote(d)}" for d in args.data),
        "machine": machine_description(device),
        "wall_seconds": time.perf_counter() - t0,
        "seeds": seeds,
        "jobs": args.jobs,
        "model_config": base.to_dict(),
        "train_config": {k: v for k, v in vars(train_cfg).items() if k != "progress"},
        "plot": plot,
    }
    write_markdown(out / "offline_eval.md", results, meta)
    print(f"wrote {out / 'offline_eval.md'} and {out / 'offline_eval.json'} ({meta['wall_seconds'] / 60:.1f} min)")
    return 0
