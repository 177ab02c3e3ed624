"""The paper's offline comparison in one harness (`make eval`, `mindstream eval --data PATH [--data PATH ...]`).

Every method sees the same leave-one-out split and the metrics of model/metrics.py. The neural
methods (YouTube DNN, MIND with K=1, MIND with K interests, ComiRec-SA) share one budget and one selection
rule: the same MINDConfig (d, max_len, negatives, H-layer) apart from what defines the method, the
same TrainConfig (epochs, patience, learning rate, batch) and early stopping on validation HR@50;
each is trained with several seeds and reported as mean ± std of the test metrics.

`--freshness` answers why the system is real-time: the default MIND-K is trained once, and each test user's
interests are computed from a history that lags the present by m behaviors, as a batch job serving
yesterday's interests would see them.
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
from model.mind import MINDConfig, Tower, interest_similarity
from model.settings import add_flags, from_args
from model.train import TrainConfig, build_model, evaluate, fit, resolve_device, scorer

METHODS = ("mostpop", "itemcf", "youtube_dnn", "mind_1", "mind_k", "comirec_sa")
FRESHNESS_LAGS = (0, 1, 2, 5, 10)
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
    if method == "comirec_sa":
        return "comirec_sa", base
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


@torch.no_grad()
def interest_cosine(model: Tower, split: Split, chunk: int = 2048) -> float:
    """Mean pairwise cosine of the test users' interests, over users with two or more (nan: no such user).
    Near 1: the interests are copies of one vector and the multi-interest machinery buys nothing."""
    device = next(model.parameters()).device
    model.eval()
    total, users = 0.0, 0
    for start in range(0, len(split.test_target), chunk):
        items = torch.as_tensor(split.test_items[start : start + chunk], device=device)
        profile = torch.as_tensor(split.profile[start : start + chunk], device=device)
        sim, has_pairs = interest_similarity(*model.user_tower(items, profile))
        total += float(sim[has_pairs].sum())
        users += int(has_pairs.sum())
    return total / users if users else math.nan


def train_one(method: str, split: Split, base: MINDConfig, train_cfg: TrainConfig, seed: int) -> dict:
    """Train one neural method with one seed; test metrics of the best validation epoch."""
    model, result = train_model(method, split, base, train_cfg, seed)
    test = evaluate(model, split, "test")
    print(f"  {method} seed {seed}: test HR@50 {test['HR@50']:.4f} valid HR@50 {result.best_valid_hr50:.4f} "
          f"({result.train_seconds:.0f}s, best epoch {result.best_epoch})", flush=True)
    return {
        **test,
        "valid_HR@50": result.best_valid_hr50,
        "train_seconds": result.train_seconds,
        "epochs": result.best_epoch,
        "interest_cos": interest_cosine(model, split),
        "params": int(sum(p.numel() for p in model.parameters())),
    }


def train_model(method: str, split: Split, base: MINDConfig, train_cfg: TrainConfig, seed: int):
    """One neural method trained with one seed; the model holds the weights of its best validation epoch."""
    kind, cfg = method_config(method, base)
    torch.manual_seed(seed)
    model = build_model(kind, replace(cfg, routing_seed=seed), split)
    result = fit(model, split, replace(train_cfg, seed=seed))
    model.load_state_dict(result.state_dict)
    return model, result


def lagged_history(history: np.ndarray, m: int, max_len: int) -> np.ndarray:
    """The tower's input had the user's interests been computed m behaviors ago: each left-padded history (most
    recent last) without its last m behaviors, truncated to the most recent max_len, left-padded to max_len."""
    if m:
        history = np.concatenate([np.zeros((len(history), m), history.dtype), history[:, :-m]], axis=1)
    if history.shape[1] < max_len:
        history = np.concatenate([np.zeros((len(history), max_len - history.shape[1]), history.dtype), history], 1)
    return np.ascontiguousarray(history[:, -max_len:])


def freshness(split: Split, model: Tower, lags: tuple[int, ...] = FRESHNESS_LAGS) -> dict:
    """Test metrics when interests lag the present by m behaviors, for m in `lags`. The same users at every m
    (those with more than max(lags) behaviors before the test target); the ranking still removes the whole
    history, as a serving-time filter of consumed items would."""
    model.eval()
    users = (split.test_exclude > 0).sum(1) > max(lags)
    history, profile = split.test_exclude[users], split.profile[users]
    target = split.test_target[users]
    score = scorer(model)
    by_lag = {m: evaluate_scorer(score, lagged_history(history, m, split.max_len), profile, target, history)
              for m in lags}
    return {"users": int(users.sum()), "all_test_users": int(len(users)), "lags": by_lag}


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
        "Protocol: docs/evaluation.md (leave-one-out; the target ranked against all items with the "
        "user's history removed; the model chosen on validation HR@50; test figures reported). "
        "Neural methods: mean ± std over the seeds; baselines are deterministic.",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- wall time: {meta['wall_seconds'] / 60:.1f} min",
        f"- seeds: {meta['seeds']}",
        f"- model config (shared by youtube_dnn, mind_1 (K=1), mind_k, comirec_sa): "
        f"`{json.dumps(meta['model_config'])}`",
        f"- training config: `{json.dumps(meta['train_config'])}`",
        "",
    ]
    for dataset, methods in results.items():
        lines += [
            f"## {dataset}",
            "",
            "| method | HR@10 | HR@50 | HR@100 | NDCG@50 | valid HR@50 | interest cos | train s | params |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for method, r in methods.items():
            cells = [f"{r[m]:.4f} ± {r[m + '_std']:.4f}" for m in (*METRICS, "valid_HR@50")]
            cos = r.get("interest_cos")
            cells.append("—" if cos is None or not math.isfinite(cos) else f"{cos:.3f}")
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {r['train_seconds']:.0f} | {int(r['params']):,} |")
        lines.append("")
    lines += ["interest cos: mean pairwise cosine of a test user's interests (users with two or more); "
              "near 1 = the interests collapsed into copies of one vector.", ""]
    if meta.get("plot"):
        lines += [f"![HR@50 per method]({meta['plot']})", ""]
    path.write_text("\n".join(lines))


def _json_text(obj: object) -> str:
    """JSON with nan (a figure that does not exist, e.g. the interest cosine of one vector) as null."""
    def clean(x: object) -> object:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), indent=2) + "\n"


def write_freshness(out: Path, results: dict, meta: dict) -> None:
    """freshness.{json,md,png}: test metrics per lag m, per dataset."""
    (out / "freshness.json").write_text(_json_text({"meta": meta, "results": results}))
    lines = [
        "# The value of freshness",
        "",
        "What a batch job serving yesterday's interests loses: the default MIND-K is trained once per dataset "
        "(protocol of docs/evaluation.md, model chosen on validation HR@50), then each test user's "
        "interests are computed from the history as it stood m behaviors before the test target. The same "
        "users at every m (those with more than 10 behaviors before the target); the whole history is still "
        "removed from the ranking. m = 0 is what the streaming worker serves.",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- wall time: {meta['wall_seconds'] / 60:.1f} min",
        f"- seed: {meta['seed']}",
        f"- model config: `{json.dumps(meta['model_config'])}`",
        "",
    ]
    for dataset, r in results.items():
        fresh = r["lags"][0]["HR@50"]
        lines += [f"## {dataset} ({r['users']} of {r['all_test_users']} test users, "
                  f"valid HR@50 {r['valid_HR@50']:.4f})", "",
                  "| lag m | HR@10 | HR@50 | HR@100 | NDCG@50 | HR@50 vs m = 0 |", "|---|---|---|---|---|---|"]
        for m, x in r["lags"].items():
            change = f"{100 * (x['HR@50'] / fresh - 1):+.1f} %" if fresh else "—"
            lines.append(f"| {m} | " + " | ".join(f"{x[k]:.4f}" for k in METRICS) + f" | {change} |")
        lines.append("")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for dataset, r in results.items():
        lags = list(r["lags"])
        ax.plot(lags, [r["lags"][m]["HR@50"] for m in lags], marker="o", label=dataset)
    ax.set_xlabel("interests computed m behaviors ago")
    ax.set_ylabel("test HR@50")
    ax.set_xticks(list(FRESHNESS_LAGS))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "freshness.png", dpi=120)
    plt.close(fig)
    lines += ["![test HR@50 against the lag of the interests](freshness.png)", ""]
    (out / "freshness.md").write_text("\n".join(lines))


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (a declared dependency; no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plot(path: Path, results: dict) -> bool:
    plt = _pyplot()
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
        "Compare mostpop, itemcf, youtube_dnn, mind_1, mind_k and comirec_sa on one or more datasets under the "
        "protocol of docs/evaluation.md; writes offline_eval.json, offline_eval.md and offline_eval.png to --out."
    )
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--data", action="append", required=True, help="dataset path (repeatable)")
    parser.add_argument("--out", default=str(OUT_DIR), help="directory for the reports")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds per neural method")
    add_flags(parser, TrainConfig, ["device", "epochs", "lr"], use_env=False)  # an evaluation's flags only
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a MINDConfig field for every neural method, e.g. --set K=8 (repeatable)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train the (method, seed) runs of a dataset in this many parallel processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--freshness", action="store_true",
                        help="instead of the comparison: train the default mind_k once per dataset and report test "
                             "HR@N when the interests lag by m = " + ", ".join(map(str, FRESHNESS_LAGS))
                             + " behaviors (freshness.{json,md,png})")


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
    # threads 0: the evaluation's processes set their own (--jobs)
    train_cfg = from_args(TrainConfig, args, progress=not args.quiet, threads=0)
    seeds = [train_cfg.seed + i for i in range(args.seeds)]
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ("mindstream eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["eval"]
               else "mindstream eval " + " ".join(f"--data {shlex.quote(d)}" for d in args.data))
    if args.freshness:
        results = {}
        for path in args.data:
            summary, split = _load_split(path, base.max_len)
            model, fit_result = train_model("mind_k", split, base, train_cfg, train_cfg.seed)
            results[summary["name"]] = {**freshness(split, model), "valid_HR@50": fit_result.best_valid_hr50}
            print(f"{summary['name']}: " + "  ".join(f"m={m} HR@50 {x['HR@50']:.4f}"
                                                     for m, x in results[summary["name"]]["lags"].items()), flush=True)
        meta = {"command": command, "machine": machine_description(device), "seed": train_cfg.seed,
                "wall_seconds": time.perf_counter() - t0, "model_config": base.to_dict()}
        write_freshness(out, results, meta)
        print(f"wrote {out / 'freshness.md'} ({meta['wall_seconds'] / 60:.1f} min)")
        return 0
    results = {}
    for path in args.data:
        name, res = evaluate_dataset(path, methods, base, train_cfg, seeds, args.jobs)
        results[name] = res
    (out / "offline_eval.json").write_text(_json_text(results))
    plot = "offline_eval.png" if write_plot(out / "offline_eval.png", results) else None
    meta = {
        "command": command,
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
