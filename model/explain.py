"""Which behaviors feed which interest: the routing coupling coefficients as a heatmap (paper Fig. 5).

    mindstream explain --release models/<version> --data ../shared/data/ml-100k --user 42 --out user42.png

The coefficients come from the release's own ONNX tower (its `coupling` output), so the picture shows
exactly the model being served. Rows are the user's most recent behaviors (oldest at the top), columns
the interests; interests beyond the user's K'u are dropped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from model.data import DataError, load_dataset
from model.release import Release, current_release_dir, load_release
from model.settings import add_flags
from stream.config import Settings


def user_coupling(
    release: Release, item_ids: list[str], profile: dict[str, str] | None = None
) -> tuple[list[str], np.ndarray, int]:
    """Coupling coefficients of one user: (known behavior ids in time order, weights [L', K'u], K'u)."""
    items = release.encode_history(item_ids)
    valid = items > 0
    if not valid.any():
        raise ValueError("none of the user's items is known to this release")
    prof = release.encode_profile(profile)[None, :]
    w = release.coupling(items[None, :], prof)[0]
    _, n_int = release.user_tower(items[None, :], prof)
    k = int(n_int[0])
    ids = [release.item_ids[i - 1] for i in items[valid]]
    return ids, w[valid][:, :k], k


def plot_coupling(
    ids: list[str],
    weights: np.ndarray,
    out: str | Path,
    categories: dict[str, list[str]] | None = None,
    title: str = "",
) -> Path:
    """Heatmap PNG, behaviors x interests, each row labelled `item id (categories)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = categories or {}
    labels = []
    for i in ids:
        cats = categories.get(i, [])
        labels.append(f"{i} ({', '.join(cats[:3])})" if cats else str(i))
    n, k = weights.shape
    fig, ax = plt.subplots(figsize=(2.6 + 1.1 * k + 0.06 * max(len(s) for s in labels), 1.2 + 0.22 * n))
    im = ax.imshow(weights, aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), [f"interest {j + 1}" for j in range(k)])
    ax.xaxis.tick_top()
    ax.set_yticks(range(n), labels, fontsize=7 if n > 30 else 9)
    ax.set_ylabel("behaviors (oldest at the top)")
    for r in range(n):
        for c in range(k):
            ax.text(
                c,
                r,
                f"{weights[r, c]:.2f}",
                ha="center",
                va="center",
                fontsize=6 if n > 30 else 8,
                color="white" if weights[r, c] > 0.6 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="coupling coefficient w_ij")
    if title:
        ax.set_title(title, fontsize=10, pad=28)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, Settings, ["release", "models_dir"], renamed={"models_dir": "--models"})
    parser.add_argument("--data", required=True, help="dataset with the user's behaviors (any supported format)")
    parser.add_argument("--user", required=True, help="external user id")
    parser.add_argument("--out", default="coupling.png", help="PNG to write")


def run(args: argparse.Namespace) -> int:
    release = load_release(args.release or current_release_dir(args.models_dir))
    data = load_dataset(args.data)
    if args.user not in data.sequences:
        raise DataError(f"{args.data}: no user {args.user!r}")
    ids, w, k = user_coupling(release, data.sequences[args.user], data.user_profile.get(args.user))
    title = f"user {args.user}: {len(ids)} behaviors, K'u = {k} interests (model {release.version})"
    out = plot_coupling(ids, w, args.out, data.item_categories, title)
    print(f"wrote {out}")
    return 0
