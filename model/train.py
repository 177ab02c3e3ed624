"""Train MIND (or the YouTube DNN baseline) and write a model release.

    mindstream train --data ../shared/data/ml-100k --out models/

The defaults below are meant to generalise across datasets rather than fit one file; every one can
be overridden by a flag or a MINDSTREAM_* environment variable (see `mindstream train --help`).
Selection follows docs/evaluation.md: early stopping and the kept weights are chosen on
validation HitRate@50, the offline figures written into the release are test figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.comirec import ComiRecSA
from model.data import Split, Vocab, item_popularity, leave_one_out, load_dataset
from model.metrics import ScoreFn, evaluate_split
from model.mind import MIND, OBJECTIVES, SAMPLERS, MINDConfig, Tower, YouTubeDNN
from model.progress import Progress

# ----------------------------------------------------------------------------- configuration
# training loop
EPOCHS = 30  # upper bound; early stopping usually ends sooner
BATCH_SIZE = 256
LR = 1e-3  # Adam
WEIGHT_DECAY = 0.0
PATIENCE = 3  # epochs without a better validation HR@50 before stopping
SEED = 42
DEVICE = "auto"  # auto = CUDA when torch finds it, else CPU
THREADS = 0  # CPU threads for torch; 0 = torch's default (all cores). 1 is faster on a busy shared machine
# the model (MINDConfig holds the rest and their meaning)
MODEL = "mind"  # mind | youtube_dnn
# -----------------------------------------------------------------------------


@dataclass
class TrainConfig:
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    lr: float = LR
    weight_decay: float = WEIGHT_DECAY
    patience: int = PATIENCE
    seed: int = SEED
    device: str = DEVICE
    threads: int = THREADS
    progress: bool = True  # a line per epoch (loss, validation HR@50); on a terminal, a bar too


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


def fit(model: Tower, split: Split, cfg: TrainConfig) -> FitResult:
    """Adam on the sampled-softmax loss; keeps the weights of the best validation HR@50 epoch."""
    seed_everything(cfg.seed)
    threads_before = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _fit(model, split, cfg)
    finally:
        torch.set_num_threads(threads_before)


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
    from model.release import write_release  # release imports onnx tooling; keep `fit` importable without it

    model_cfg = model_cfg or MINDConfig()
    train_cfg = train_cfg or TrainConfig()
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
        model.cpu(), vocab, out, data_summary=summary, metrics=metrics, train_config=asdict(train_cfg), version=version
    )


# ----------------------------------------------------------------------------- command line

# field of MINDConfig / TrainConfig -> (type, help): one flag each, whose default comes from
# MINDSTREAM_<FIELD upper> if set, else from the config class.
_MODEL_FLAGS = {
    "d": (int, "embedding and interest dimension"),
    "K": (int, "maximum number of interests"),
    "r": (int, "dynamic routing iterations"),
    "sigma": (float, "std of the routing logit initialisation"),
    "p": (float, "label-aware attention power (inf = hard attention)"),
    "max_len": (int, "most recent behaviors per user"),
    "n_neg": (int, "sampled-softmax negatives per batch"),
    "sampler": (str, "negative sampling; full = full softmax (small catalogs)"),
    "profile_dim": (int, "embedding size per profile field"),
    "hard_neg_beta": (float, "REMI interest-aware hard negatives, 0 = off"),
    "routing_reg": (float, "REMI routing regularisation weight, 0 = off"),
    "id_dropout": (float, "DropoutNet: share of items whose id embedding is dropped per training step, 0 = off"),
    "dropout": (float, "dropout in the H-layer"),
    "objective": (str, "label_aware = the paper's label-aware attention; max = every item scored by the max over "
                  "interests, as serving does; logsumexp = its smooth bound"),
    "tau": (float, "temperature of --objective logsumexp"),
    "repel": (float, "weight of the repel penalty on the mean pairwise cosine of a user's interests, 0 = off"),
}
_CHOICES = {"sampler": SAMPLERS, "objective": OBJECTIVES}
_TRAIN_FLAGS = {
    "epochs": (int, "maximum epochs"),
    "batch_size": (int, "batch size"),
    "lr": (float, "Adam learning rate"),
    "weight_decay": (float, "Adam weight decay"),
    "patience": (int, "early-stopping patience in epochs (validation HR@50)"),
    "seed": (int, "random seed"),
    "device": (str, "auto | cpu | cuda"),
    "threads": (int, "torch CPU threads, 0 = torch default"),
}


def _env(name: str, default, typ):
    raw = os.environ.get(f"MINDSTREAM_{name.upper()}")
    try:
        return default if raw is None else typ(raw)
    except ValueError:
        raise ValueError(f"MINDSTREAM_{name.upper()}={raw!r} is not {typ.__name__}") from None


def _add_flags(parser: argparse.ArgumentParser, flags: dict[str, tuple[type, str]], defaults: object) -> None:
    """One flag per field of `flags`, its default from MINDSTREAM_<FIELD> or else the field of `defaults`."""
    for name, (typ, help_) in flags.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=typ,
            default=_env(name, getattr(defaults, name), typ),
            choices=_CHOICES.get(name),
            help=f"{help_} [MINDSTREAM_{name.upper()}]",
        )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train MIND on a dataset (Amazon sequence txt, MovieLens atomic directory, clicks CSV/JSONL) and write a "
        "release under --out. Every flag's default can be set with the environment variable MINDSTREAM_<FLAG> "
        "(upper case, e.g. MINDSTREAM_EPOCHS=5); the value shown is the one in effect."
    )
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument(
        "--data",
        default=os.environ.get("MINDSTREAM_DATA"),
        required="MINDSTREAM_DATA" not in os.environ,
        help="dataset path [MINDSTREAM_DATA]",
    )
    parser.add_argument("--out", default=_env("models_dir", "models", str), help="release root [MINDSTREAM_MODELS_DIR]")
    parser.add_argument(
        "--model", default=_env("model", MODEL, str), choices=["mind", "youtube_dnn"], help="[MINDSTREAM_MODEL]"
    )
    parser.add_argument("--version", default=None, help="release version; None = UTC timestamp plus a random suffix")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    mdef = MINDConfig()
    _add_flags(parser, _MODEL_FLAGS, mdef)
    parser.add_argument(
        "--hidden",
        default=_env("hidden", ",".join(map(str, mdef.hidden)), str),
        help="H-layer ReLU widths, comma separated [MINDSTREAM_HIDDEN]",
    )
    parser.add_argument(
        "--static-k",
        action="store_true",
        default=bool(_env("static_k", 0, int)),
        help="always K interests instead of K'u = max(1, min(K, floor(log2 |Iu|))) [MINDSTREAM_STATIC_K]",
    )
    parser.add_argument(
        "--whole-history",
        action="store_true",
        default=bool(_env("whole_history", 0, int)),
        help="interest 0 is the routing-free capsule of the whole history (MIND-1's) [MINDSTREAM_WHOLE_HISTORY]",
    )
    _add_flags(parser, _TRAIN_FLAGS, TrainConfig())


def run(args: argparse.Namespace) -> int:
    hidden = tuple(int(h) for h in str(args.hidden).split(",") if h.strip())
    model_cfg = MINDConfig(**{k: getattr(args, k) for k in _MODEL_FLAGS}, hidden=hidden, dynamic_k=not args.static_k,
                           whole_history=args.whole_history)
    train_cfg = TrainConfig(**{k: getattr(args, k) for k in _TRAIN_FLAGS}, progress=not args.quiet)
    path = train_release(args.data, args.out, model_cfg, train_cfg, model_kind=args.model, version=args.version)
    manifest = json.loads((path / "manifest.json").read_text())
    print(f"release {manifest['version']} written to {path}")
    print(json.dumps(manifest["metrics"], indent=2))
    return 0
