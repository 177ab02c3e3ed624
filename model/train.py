"""Train MIND (or the YouTube DNN baseline) and write a model release.

    mindstream train --data ../shared/data/ml-100k --out models/

The defaults below are meant to generalise across datasets rather than fit one file; every one can
be overridden by a flag or a MINDSTREAM_* environment variable (see `mindstream train --help`).
Selection follows docs/evaluation.md: early stopping and the kept weights are chosen on
validation HitRate@50, the offline figures written into the release are test figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.ann import EFS, EfCheck
from model.comirec import ComiRecSA
from model.data import Split, Vocab, item_popularity, leave_one_out, load_dataset
from model.metrics import ScoreFn, evaluate_split
from model.mind import MIND, MINDConfig, Tower, YouTubeDNN
from model.priority import Priority
from model.progress import Progress
from model.settings import add_flags, from_args, setting
from stream.config import Settings

# ----------------------------------------------------------------------------- configuration
# Each setting is a flag of `mindstream train` and its variable MINDSTREAM_<FLAG> (model/settings.py); the
# model's own settings are MINDConfig's (model/mind.py).

# The trainer's thread bound, so that a daily retrain on the cores of the workers leaves them their SLO: torch's
# default (one OpenMP thread per core, spinning between ops) beside a worker took all of a 2-core machine, and
# two such processes slowed each other's training 90-fold. One thread leaves the other cores to the workers.
# Its priority is model/priority.py's.
TRAIN_THREADS = 1


def thread_count(text: str) -> int:
    """A --threads value: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a thread count (0 or more)")
    return value


@dataclass
class TrainConfig:
    epochs: int = setting(30, "maximum epochs; early stopping usually ends sooner")
    batch_size: int = setting(256, "batch size")
    lr: float = setting(1e-3, "Adam learning rate")
    weight_decay: float = setting(0.0, "Adam weight decay")
    patience: int = setting(3, "early-stopping patience: epochs without a better validation HR@50")
    seed: int = setting(42, "random seed")
    device: str = setting("auto", "auto (CUDA when torch finds it, else CPU), cpu or cuda")
    threads: int = setting(TRAIN_THREADS, "torch CPU threads of the whole job (training, test, index build); 0 = "
                           "torch's default, all cores, which on cores shared with workers starves them "
                           "(docs/benchmarks/retrain_beside.md)", parse=thread_count)
    ann_recall: float = setting(0.95, "recall@100 of the served candidate list against exact search that the "
                                "release's hnswlib ef must reach on validation users; the smallest such ef of "
                                f"{','.join(map(str, EFS))} is stored (200 when none reaches it)")
    # a line per epoch (loss, validation HR@50); on a terminal, a bar too
    progress: bool = setting(True, "no progress bar", flag="--quiet", env=None)


MODEL = "mind"  # the tower train_release trains by default


@dataclass
class TrainJob:
    """What `mindstream train` trains on and under what name (the release root, --out, is the worker's
    --models-dir setting)."""

    data: str = setting("", "dataset path", required=True)
    model: str = setting(MODEL, "the tower to train", choices=("mind", "youtube_dnn"))
    version: str = setting("", "release version; empty = the UTC time plus a random suffix", env=None)
# -----------------------------------------------------------------------------


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]  # the weights of the best validation epoch (on CPU)
    best_valid_hr50: float
    best_epoch: int
    epochs: int  # epochs actually run
    train_seconds: float
    samples_per_s: float
    history: list[dict] = field(default_factory=list)  # per epoch: loss, validation metrics


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def build_model(kind: str, cfg: MINDConfig, split: Split) -> Tower:
    """A MIND or YouTubeDNN sized for the split's vocabulary, with its side information."""
    vocab = split.vocab
    freq = torch.as_tensor(item_popularity(split))
    tensors = dict(
        item_categories=torch.as_tensor(vocab.item_category_matrix()),
        n_categories=vocab.n_categories,
        profile_sizes=vocab.profile_sizes(),
        seen=freq > 0,
        item_freq=freq,
    )
    if cfg.max_len != split.max_len:
        raise ValueError(f"model max_len {cfg.max_len} != split max_len {split.max_len}")
    if kind == "mind":
        return MIND(cfg, vocab.n_items, **tensors)
    if kind == "youtube_dnn":
        return YouTubeDNN(cfg, vocab.n_items, **tensors)
    if kind == "comirec_sa":
        return ComiRecSA(cfg, vocab.n_items, **tensors)
    raise ValueError(f"unknown model {kind!r}: mind, youtube_dnn or comirec_sa")


def scorer(model: Tower) -> ScoreFn:
    """The model's serving score of every item as a `model.metrics` score function (call in eval mode)."""
    device = next(model.parameters()).device

    def score(items: np.ndarray, profile: np.ndarray) -> torch.Tensor:
        return model.score_all(torch.as_tensor(items, device=device), torch.as_tensor(profile, device=device)).cpu()

    return score


def evaluate(model: Tower, split: Split, part: str = "valid") -> dict[str, float]:
    """HR@10/50/100 and NDCG@50 of the model on the split's validation or test users (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        return evaluate_split(scorer(model), split, part)
    finally:
        model.train(was_training)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op (OpenMP) threads set to `threads` for the block, then put back; 0 leaves them."""
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(model: Tower, split: Split, cfg: TrainConfig) -> FitResult:
    """Adam on the sampled-softmax loss; keeps the weights of the best validation HR@50 epoch."""
    seed_everything(cfg.seed)
    with torch_threads(cfg.threads):
        return _fit(model, split, cfg)


def _fit(model: Tower, split: Split, cfg: TrainConfig) -> FitResult:
    device = resolve_device(cfg.device)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    items = torch.as_tensor(split.train_items)
    profile = torch.as_tensor(split.train_profile)
    target = torch.as_tensor(split.train_target)
    n = len(target)
    gen = torch.Generator().manual_seed(cfg.seed)
    best = {"hr": -1.0, "epoch": 0, "state": None}
    history: list[dict] = []
    samples, t0, bad = 0, time.perf_counter(), 0
    steps = math.ceil(n / cfg.batch_size)
    bar = Progress("training", total=cfg.epochs * steps, unit="batch", enabled=cfg.progress)
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for s in range(steps):
            idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            loss = model.loss(items[idx].to(device), profile[idx].to(device), target[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            samples += len(idx)
            bar.update(1)
            if s % 20 == 0:
                bar.status(epoch=epoch, loss=f"{loss.item():.3f}", valid_hr50=f"{max(best['hr'], 0):.4f}")
        valid = evaluate(model, split, "valid")
        history.append({"epoch": epoch, "loss": loss_sum / steps, **{f"valid_{k}": v for k, v in valid.items()}})
        bar.line(f"epoch {epoch}/{cfg.epochs}: loss {loss_sum / steps:.4f}  valid HR@50 {valid['HR@50']:.4f}  "
                 f"({time.perf_counter() - t0:.1f} s)")
        if valid["HR@50"] > best["hr"]:
            state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best, bad = {"hr": valid["HR@50"], "epoch": epoch, "state": state}, 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    bar.close()
    seconds = time.perf_counter() - t0
    return FitResult(
        state_dict=best["state"],
        best_valid_hr50=best["hr"],
        best_epoch=best["epoch"],
        epochs=epoch,
        train_seconds=seconds,
        samples_per_s=samples / max(seconds, 1e-9),
        history=history,
    )


def train_release(
    data: str | Path,
    out: str | Path,
    model_cfg: MINDConfig | None = None,
    train_cfg: TrainConfig | None = None,
    model_kind: str = MODEL,
    version: str | None = None,
) -> Path:
    """The whole training job: load any dataset, split, fit, test, write a release; returns its directory."""
    model_cfg = model_cfg or MINDConfig()
    train_cfg = train_cfg or TrainConfig()
    with torch_threads(train_cfg.threads):  # the test, the export and the ef check too, not only fit
        return _train_release(data, out, model_cfg, train_cfg, model_kind, version)


def _train_release(data: str | Path, out: str | Path, model_cfg: MINDConfig, train_cfg: TrainConfig,
                   model_kind: str, version: str | None) -> Path:
    from model.release import write_release  # release imports onnx tooling; keep `fit` importable without it

    interactions = load_dataset(data)
    vocab = Vocab.build(interactions)
    split = leave_one_out(interactions, vocab, model_cfg.max_len)
    seed_everything(train_cfg.seed)
    model = build_model(model_kind, model_cfg, split)
    result = fit(model, split, train_cfg)
    model.load_state_dict(result.state_dict)
    test = evaluate(model, split, "test")
    metrics = {
        **{f"test_{k}": v for k, v in test.items()},
        "valid_HR@50": result.best_valid_hr50,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "train_seconds": round(result.train_seconds, 2),
        "samples_per_s": round(result.samples_per_s, 1),
    }
    summary = {**interactions.summary(), "path": str(data), "train_samples": int(len(split.train_target))}
    return write_release(
        model.cpu(), vocab, out, data_summary=summary, metrics=metrics, train_config=asdict(train_cfg), version=version,
        ef_check=EfCheck(split.valid_items, split.profile, train_cfg.ann_recall),
        index_threads=train_cfg.threads or -1,
    )


# ----------------------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train MIND on a dataset (Amazon sequence txt, MovieLens atomic directory, clicks CSV/JSONL) and write a "
        "release under --out. A flag's default can be set with the environment variable its help names, "
        "MINDSTREAM_<FLAG> for most (upper case, e.g. MINDSTREAM_EPOCHS=5); the value shown is the one in effect."
    )
    add_flags(parser, TrainJob, ["data"])
    add_flags(parser, Settings, ["models_dir"], renamed={"models_dir": "--out"})
    add_flags(parser, TrainJob, ["model", "version"])
    add_flags(parser, MINDConfig)
    add_flags(parser, TrainConfig)
    add_flags(parser, Priority)


def run(args: argparse.Namespace) -> int:
    job = from_args(TrainJob, args)
    train_cfg = from_args(TrainConfig, args)  # the priority (model/priority.py) was applied by stream/cli.py
    path = train_release(job.data, args.models_dir, from_args(MINDConfig, args), train_cfg, model_kind=job.model,
                         version=job.version or None)
    manifest = json.loads((path / "manifest.json").read_text())
    print(f"release {manifest['version']} written to {path}")
    hnsw = manifest["hnsw"]
    print(f"hnswlib ef {hnsw['ef_search']}: recall@100 {hnsw['recall_at_100']} against exact search on "
          f"{hnsw['recall_users']} validation users (target {hnsw['recall_target']}"
          f"{'' if hnsw['recall_target_reached'] else ', which no ef reached: the default ef serves'})")
    print(json.dumps(manifest["metrics"], indent=2))
    return 0
