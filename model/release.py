"""Model releases: write one directory per version, verify and load one (layout in ARCHITECTURE.md).

    models/<version>/manifest.json, user_tower.onnx, item_embeddings.npy, item_ids.txt, items.hnsw,
                     category_embeddings.npy, [item_categories.json]  (optional: when the training data had categories)
    models/CURRENT

A release is written into a hidden temporary directory and renamed into place, and CURRENT is
replaced atomically, so a reader never sees half a release. `load_release` trusts nothing: it checks
every checksum, every shape against every other, and runs the tower once before handing it out.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import struct
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import hnswlib
import numpy as np
import onnxruntime as ort
import torch

from model import ann
from model.data import Vocab
from model.mind import MIND, Tower
from model.new_items import NewItems

VERIFY_SAMPLE = 4096  # index rows compared with the embeddings when a release is loaded
FILES = ("user_tower.onnx", "item_embeddings.npy", "item_ids.txt", "items.hnsw", "category_embeddings.npy")
# {item_id: [category, ...]} of the training data, for people (the per-user page), not for the tower (whose
# category embeddings are inside user_tower.onnx). Optional; checked like every file the manifest lists.
ITEM_CATEGORIES = "item_categories.json"
# 2: the tower takes behavior embeddings instead of indices; category_embeddings.npy (new items' vectors)
# 3: items.hnsw holds the vectors lifted to the norm hnsw.radius (model/ann.py `build_index`), dimension d + 1
FORMAT = 3
ONNX_OPSET = 17
# A denser graph than hnswlib's usual 16 / 200: on a trained 100,000-item synthetic catalog, recall@100 0.95 at ef
# 100 instead of 400 (Beauty: 0.988 instead of 0.968 at ef 50), for 1.5-2.5x the build time and 128 more bytes of
# links per item (docs/benchmarks/ann.md).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 400
HNSW_EF_SEARCH = 200  # query-time ef of a release written without an ef check (and of older releases)


class ReleaseError(Exception):
    """A release directory that must not be served; the message says which file and why."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Export(torch.nn.Module):
    def __init__(self, model: Tower):
        super().__init__()
        self.model = model

    def forward(self, behaviors: torch.Tensor, mask: torch.Tensor, profile: torch.Tensor):
        return self.model.embedded_tower(behaviors, mask, profile)


def export_onnx(model: Tower, path: Path) -> None:
    """user_tower.onnx: inputs behaviors [B, L, d] float32 (rows of item_embeddings.npy, or a new item's
    category vector; left-padded with zero rows), mask [B, L] bool (false = padding) and profile [B, F] int64;
    outputs interests [B, K, d] float32, n_interests [B] int64 and coupling [B, L, K] float32."""
    was_training = model.training
    model = model.cpu().eval()
    n_fields = len(model.profile_sizes)
    items = torch.tensor([[0, 0, 1, 2, 3], [1, 2, 3, 4, 5]], dtype=torch.long).clamp(max=model.n_items)
    profile = torch.zeros(2, n_fields, dtype=torch.long)
    # the wrapper must be in eval mode too: the exporter restores the wrapper's mode recursively afterwards
    wrapper = _Export(model).eval()
    with warnings.catch_warnings():
        # the TorchScript exporter (dynamo=False) is deliberate: docs/platform.md#onnx-export
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            behaviors = model.embedding(items)
        _export(wrapper, behaviors, items > 0, profile, path)
    model.train(was_training)


def _export(wrapper: torch.nn.Module, behaviors: torch.Tensor, mask: torch.Tensor, profile: torch.Tensor,
            path: Path) -> None:
    torch.onnx.export(
        wrapper,
        (behaviors, mask, profile),
        str(path),
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=["behaviors", "mask", "profile"],
        output_names=["interests", "n_interests", "coupling"],
        dynamic_axes={
            "behaviors": {0: "batch", 1: "seq"},
            "mask": {0: "batch", 1: "seq"},
            "profile": {0: "batch"},
            "interests": {0: "batch"},
            "n_interests": {0: "batch"},
            "coupling": {0: "batch", 1: "seq"},
        },
    )


def new_version() -> str:
    """Sortable and unique: UTC time to the second plus a short random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def set_current(root: str | Path, version: str) -> None:
    """Point models/CURRENT at `version` (temp file + os.replace: readers see the old or the new)."""
    root = Path(root)
    if not (root / version / "manifest.json").is_file():
        raise ReleaseError(f"{root / version}: no release to make current")
    _atomic_write_text(root / "CURRENT", version + "\n")


def current_release_dir(root: str | Path) -> Path:
    """The directory models/CURRENT names."""
    root = Path(root)
    try:
        version = (root / "CURRENT").read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ReleaseError(f"{root / 'CURRENT'}: cannot read ({e.strerror})") from None
    if not version or "/" in version or version.startswith("."):
        raise ReleaseError(f"{root / 'CURRENT'}: invalid version {version!r}")
    return root / version


@torch.no_grad()
def write_release(
    model: Tower,
    vocab: Vocab,
    out: str | Path,
    *,
    data_summary: dict,
    metrics: dict,
    train_config: dict | None = None,
    version: str | None = None,
    make_current: bool = True,
    ef_check: ann.EfCheck | None = None,
    index_threads: int = -1,
) -> Path:
    """Write models/<version>/ for a trained tower and (by default) make it CURRENT; returns the directory.
    With `ef_check`, the manifest's query-time ef is the smallest of model/ann.py's EFS whose recall@100 on
    those users reaches its target (`choose_ef`); without, or when none reaches it, HNSW_EF_SEARCH.
    `index_threads`: hnswlib's threads for the index build (-1: one per core)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    version = version or new_version()
    final = root / version
    if final.exists():
        raise ReleaseError(f"{final}: release already exists")
    tmp = root / f".{version}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    model = model.cpu().eval()
    cfg = model.cfg

    export_onnx(model, tmp / "user_tower.onnx")
    emb = model.item_embeddings()[1:].numpy().astype(np.float32)  # row i = tower index i + 1
    if emb.shape[0] != vocab.n_items:
        raise ReleaseError(f"model has {emb.shape[0]} items, vocabulary {vocab.n_items}")
    np.save(tmp / "item_embeddings.npy", emb, allow_pickle=False)
    (tmp / "item_ids.txt").write_text("".join(f"{i}\n" for i in vocab.item_ids), encoding="utf-8")
    item_categories = {item: [vocab.categories[c - 1] for c in cats]
                       for item, cats in zip(vocab.item_ids, vocab.item_category_lists[1:], strict=True) if cats}
    if item_categories:
        (tmp / ITEM_CATEGORIES).write_text(json.dumps(item_categories, separators=(",", ":")), encoding="utf-8")
    # the vector the embedding layer gives an item known only by its category: that category's embedding
    # (row c = category c of the manifest's `categories`, 1-based; row 0 = none)
    cat_vectors = model.embedding.cat_emb.weight[: vocab.n_categories + 1].numpy().astype(np.float32)
    np.save(tmp / "category_embeddings.npy", cat_vectors, allow_pickle=False)
    radius = ann.radius(emb, cat_vectors)  # new items are indexed with the category vectors
    index = ann.build_index(emb, radius, HNSW_M, HNSW_EF_CONSTRUCTION, threads=index_threads)
    index.save_index(str(tmp / "items.hnsw"))
    hnsw = {"space": "ip", "M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH,
            "radius": radius, "exact_head": ann.head_size(emb.shape[0])}
    if ef_check is not None:
        hnsw.update(_chosen_ef(model, index, emb, ef_check, ann.ExactHead.of(emb, hnsw["exact_head"])))

    hyper = cfg.to_dict()
    hyper.pop("extra", None)
    manifest = {
        "format": FORMAT,
        "version": version,
        "created_ts": time.time(),
        "model": "MIND" if isinstance(model, MIND) else type(model).__name__,
        "data": data_summary,
        "hyperparameters": hyper,
        "train_config": train_config or {},
        "item_count": int(emb.shape[0]),
        "d": int(emb.shape[1]),
        "K": int(cfg.K),
        "max_len": int(cfg.max_len),
        "metrics": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()},
        "profile_fields": vocab.profile_fields,
        "categories": vocab.categories,
        "hnsw": hnsw,
        "onnx": {
            "inputs": {"behaviors": "[B, L, d] float32, left-padded with zero rows",
                       "mask": "[B, L] bool, false = padding", "profile": "[B, F] int64, 0 = unknown"},
            "outputs": {
                "interests": "[B, K, d] float32",
                "n_interests": "[B] int64",
                "coupling": "[B, L, K] float32",
            },
            "opset": ONNX_OPSET,
        },
        "files": {name: sha256_file(tmp / name) for name in (*FILES, ITEM_CATEGORIES) if (tmp / name).exists()},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, final)
    if make_current:
        set_current(root, version)
    return final


def _chosen_ef(model: Tower, index: hnswlib.Index, emb: np.ndarray, check: ann.EfCheck, head: ann.ExactHead) -> dict:
    """The manifest's ef fields from the recall the index and its exact `head`, searched as the worker searches
    them, reach on `check`'s users (at most ann.MAX_USERS,
    a fixed sample): ef_search, the recall there, the target and the recall at every ef measured (ascending, up
    to the first that reaches the target)."""
    users = np.arange(len(check.items))
    if len(users) > ann.MAX_USERS:
        users = np.sort(np.random.default_rng(0).choice(users, ann.MAX_USERS, replace=False))
    items = torch.as_tensor(check.items[users], dtype=torch.long)
    interests, n_interests = model.user_tower(items, torch.as_tensor(check.profile[users], dtype=torch.long))
    # the served interests (K'u of them) and history (the sequence's items: labels are tower indices - 1)
    queries = [(ann.kept_interests(v.numpy(), k), row[row > 0] - 1)
               for v, k, row in zip(interests, n_interests, items.numpy(), strict=True)]
    recalls = ann.measure(index, emb, queries, stop_at=check.target, head=head)
    ef = ann.choose_ef(recalls, check.target)
    # a target no ef reaches keeps the default: serving cost is not multiplied for a recall still short of it
    chosen = ef if ef is not None else HNSW_EF_SEARCH
    return {"ef_search": chosen, "recall_at_100": round(recalls[chosen], 4), "recall_target": check.target,
            "recall_target_reached": ef is not None,
            "recall_by_ef": {str(e): round(r, 4) for e, r in recalls.items()}, "recall_users": len(queries)}


@dataclass
class Release:
    """A verified release, ready to serve. `item_index` maps external ids to tower indices (1-based);
    embedding row / hnsw label r is tower index r + 1. `new_items` holds the items indexed while it serves
    (model/new_items.py); `head` the items searched exactly beside the graph (model/ann.py ExactHead). Every
    index access goes through `search` / `new_items`."""

    path: Path
    version: str
    manifest: dict
    manifest_sha256: str
    item_ids: list[str]
    item_index: dict[str, int]
    embeddings: np.ndarray
    index: hnswlib.Index
    profile_fields: dict[str, dict[str, int]]
    new_items: NewItems
    head: ann.ExactHead = field(repr=False)
    session: ort.InferenceSession = field(repr=False)

    @property
    def d(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def K(self) -> int:
        return int(self.manifest["K"])

    @property
    def max_len(self) -> int:
        return int(self.manifest["max_len"])

    @functools.cached_property
    def item_categories(self) -> dict[str, list[str]]:
        """Categories per item id from the training data ({} if the release has none). Read on first use: only
        the per-user page needs it, and a swap should not wait for it (its checksum was verified at load)."""
        if ITEM_CATEGORIES not in self.manifest["files"]:
            return {}
        return json.loads((self.path / ITEM_CATEGORIES).read_text(encoding="utf-8"))

    def _feed(self, behaviors: np.ndarray, mask: np.ndarray, profile: np.ndarray | None) -> dict[str, np.ndarray]:
        if profile is None:
            profile = np.zeros((behaviors.shape[0], len(self.profile_fields)), dtype=np.int64)
        feed = {"behaviors": np.ascontiguousarray(behaviors, dtype=np.float32),
                "mask": np.ascontiguousarray(mask, dtype=bool),
                "profile": np.ascontiguousarray(profile, dtype=np.int64)}
        # the exporter drops an input the graph does not use (a dataset without profile fields)
        return {i.name: feed[i.name] for i in self.session.get_inputs()}

    def lookup(self, items: np.ndarray) -> np.ndarray:
        """Tower indices [B, L] (0 = padding) -> behavior embeddings [B, L, d] (padding rows zero)."""
        items = np.asarray(items, dtype=np.int64)
        return self.embeddings[np.maximum(items - 1, 0)] * (items > 0)[..., None]

    def tower(self, behaviors: np.ndarray, mask: np.ndarray,
              profile: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """behaviors [B, L, d], mask [B, L] bool, profile [B, F] -> interests [B, K, d], n_interests [B]."""
        interests, n = self.session.run(["interests", "n_interests"], self._feed(behaviors, mask, profile))
        return interests, n

    def user_tower(self, items: np.ndarray, profile: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """items [B, L] int64 left-padded tower indices, profile [B, F] -> interests [B, K, d], n_interests [B]."""
        return self.tower(self.lookup(items), np.asarray(items) > 0, profile)

    def coupling(self, items: np.ndarray, profile: np.ndarray | None = None) -> np.ndarray:
        """Routing coupling coefficients [B, L, K] (interpretability; see model/explain.py)."""
        return self.session.run(["coupling"], self._feed(self.lookup(items), np.asarray(items) > 0, profile))[0]

    def encode_history(self, item_ids: list[str]) -> np.ndarray:
        """External ids in time order -> [max_len] int64 left-padded; unknown items are skipped."""
        idx = [self.item_index[i] for i in item_ids if i in self.item_index][-self.max_len :]
        out = np.zeros(self.max_len, dtype=np.int64)
        if idx:
            out[self.max_len - len(idx) :] = idx
        return out

    def vector(self, item_id: str) -> np.ndarray | None:
        """The item's embedding: the trained one, else its new-item (category) vector, else None."""
        i = self.item_index.get(item_id)
        return self.embeddings[i - 1] if i is not None else self.new_items.vector(item_id)

    def knows(self, item_id: str) -> bool:
        """The item has a vector in this release (trained, or a new item)."""
        return item_id in self.item_index or item_id in self.new_items

    def encode_behaviors(self, item_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """External ids in time order -> behaviors [max_len, d] left-padded and mask [max_len]: the newest
        max_len items that have a vector (trained or new); the others are skipped."""
        vectors = [v for v in (self.vector(i) for i in item_ids) if v is not None][-self.max_len :]
        out = np.zeros((self.max_len, self.d), dtype=np.float32)
        mask = np.zeros(self.max_len, dtype=bool)
        if vectors:
            out[self.max_len - len(vectors) :] = vectors
            mask[self.max_len - len(vectors) :] = True
        return out, mask

    def label(self, item_id: str) -> int | None:
        """The item's label in `search` results (trained: its row; new: n + its number), or None."""
        i = self.item_index.get(item_id)
        return i - 1 if i is not None else self.new_items.label(item_id)

    def item_id(self, label: int) -> str:
        return self.item_ids[label] if label < len(self.item_ids) else self.new_items.item_id(label)

    def item_ids_of(self, labels: np.ndarray) -> list[str]:
        """`item_id` of every label, by one array lookup for the trained ones (a list of 100 per user and click)."""
        n = len(self.item_ids)
        if len(labels) == 0 or labels.max() < n:
            return self._id_array[labels].tolist()
        return [self.item_id(int(label)) for label in labels]

    @functools.cached_property
    def _id_array(self) -> np.ndarray:
        return np.asarray(self.item_ids, dtype=object)

    @property
    def n_indexed(self) -> int:
        return len(self.item_ids) + len(self.new_items)

    def search(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query row: (labels, hnswlib distances) of the best k trained and new items from the graph (serialised
        with the index's writers, model/new_items.py), and of the best k of the exact head, unordered."""
        return ann.with_head(self.new_items.search(queries, k), self.head.search(queries, k))

    def encode_profile(self, profile: dict[str, str] | None) -> np.ndarray:
        profile = profile or {}
        return np.asarray([v.get(profile.get(k, ""), 0) for k, v in self.profile_fields.items()], dtype=np.int64)


def _hnsw_header(path: Path) -> tuple[int, int]:
    """(element count, vector dimension) from an hnswlib index file header, read before hnswlib touches
    it: hnswlib trusts the dimension it is given and would read a mismatched file out of bounds."""
    with open(path, "rb") as f:
        head = f.read(48)
    if len(head) < 48:
        raise ReleaseError(f"{path}: truncated hnswlib index")
    _offset0, _max_el, count, _size_per_el, label_offset, offset_data = struct.unpack("<6Q", head)
    data_size = label_offset - offset_data
    if data_size <= 0 or data_size % 4:
        raise ReleaseError(f"{path}: not an hnswlib float32 index (element data size {data_size})")
    return int(count), int(data_size // 4)


def load_release(path: str | Path) -> Release:
    """Verify and load a release directory; raises ReleaseError saying what is wrong."""
    path = Path(path)
    mpath = path / "manifest.json"
    try:
        raw = mpath.read_bytes()
        manifest = json.loads(raw)
    except OSError as e:
        raise ReleaseError(f"{mpath}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{mpath}: not valid JSON ({e})") from None
    for key in ("version", "files", "item_count", "d", "K", "max_len", "profile_fields"):
        if key not in manifest:
            raise ReleaseError(f"{mpath}: missing key {key!r}")
    if manifest.get("format") != FORMAT:
        raise ReleaseError(f"{mpath}: format {manifest.get('format')}, this version reads {FORMAT} (its index holds "
                           "lifted vectors, model/ann.py): write the release again")
    radius = manifest.get("hnsw", {}).get("radius")
    if not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius <= 0:
        raise ReleaseError(f"{mpath}: hnsw.radius must be a positive number, got {radius!r}")
    files = manifest["files"]
    for name in FILES:
        if name not in files:
            raise ReleaseError(f"{mpath}: no checksum for {name}")
    for name, digest in files.items():
        fpath = path / name
        if "/" in name or not fpath.is_file():
            raise ReleaseError(f"{fpath}: listed in the manifest but missing")
        actual = sha256_file(fpath)
        if actual != digest:
            raise ReleaseError(f"{fpath}: sha256 mismatch (manifest {digest[:12]}..., file {actual[:12]}...)")

    n, d, K = int(manifest["item_count"]), int(manifest["d"]), int(manifest["K"])
    try:
        emb = np.load(path / "item_embeddings.npy", allow_pickle=False)
    except ValueError as e:
        raise ReleaseError(f"{path / 'item_embeddings.npy'}: cannot load without pickle ({e})") from None
    if emb.dtype != np.float32 or emb.ndim != 2 or emb.shape != (n, d):
        raise ReleaseError(
            f"{path / 'item_embeddings.npy'}: expected float32 [{n}, {d}] (manifest), got {emb.dtype} {list(emb.shape)}"
        )
    if not np.isfinite(emb).all():
        raise ReleaseError(f"{path / 'item_embeddings.npy'}: non-finite values")
    item_ids = (path / "item_ids.txt").read_text(encoding="utf-8").splitlines()
    if len(item_ids) != n:
        raise ReleaseError(f"{path / 'item_ids.txt'}: {len(item_ids)} ids, embeddings have {n} rows")
    if len(set(item_ids)) != n:
        raise ReleaseError(f"{path / 'item_ids.txt'}: duplicate item ids")

    count, index_dim = _hnsw_header(path / "items.hnsw")
    if count != n or index_dim != d + 1:
        raise ReleaseError(f"{path / 'items.hnsw'}: index holds {count} x {index_dim}, embeddings are {n} x {d} "
                           f"(lifted: {n} x {d + 1})")
    index = hnswlib.Index(space="ip", dim=d + 1)
    try:
        index.load_index(str(path / "items.hnsw"), max_elements=n)
    except RuntimeError as e:
        raise ReleaseError(f"{path / 'items.hnsw'}: hnswlib cannot load it ({e})") from None
    index.set_ef(int(manifest.get("hnsw", {}).get("ef_search", HNSW_EF_SEARCH)))
    head = manifest.get("hnsw", {}).get("exact_head", 0)  # releases written before it had none
    if not isinstance(head, int) or isinstance(head, bool) or not 0 <= head <= n:
        raise ReleaseError(f"{mpath}: hnsw.exact_head must be an item count from 0 to {n}, got {head!r}")
    categories = [str(c) for c in manifest.get("categories") or []]
    try:
        category_vectors = np.load(path / "category_embeddings.npy", allow_pickle=False)
    except ValueError as e:
        raise ReleaseError(f"{path / 'category_embeddings.npy'}: cannot load without pickle ({e})") from None
    if category_vectors.dtype != np.float32 or category_vectors.shape != (len(categories) + 1, d) \
            or not np.isfinite(category_vectors).all():
        raise ReleaseError(f"{path / 'category_embeddings.npy'}: expected finite float32 [{len(categories) + 1}, "
                           f"{d}] (categories + none), got {category_vectors.dtype} {list(category_vectors.shape)}")
    # The checksums pin every file; this checks that the index and the embeddings belong together. On a
    # sample: hnswlib's get_items builds a Python list of every float while holding the GIL (11 s for 1M
    # items), which would stall the worker's event loop during a hot swap (docs/benchmarks/hotswap.md).
    if index.get_current_count() != n:
        raise ReleaseError(f"{path / 'items.hnsw'}: {index.get_current_count()} vectors, embeddings have {n} rows")
    sample = np.unique(np.concatenate([[0, n - 1], np.random.default_rng(0).integers(0, n, VERIFY_SAMPLE)]))
    try:
        vectors = np.asarray(index.get_items(sample), dtype=np.float32)
    except RuntimeError:  # a label that is not in the index
        raise ReleaseError(f"{path / 'items.hnsw'}: labels are not the row numbers 0..{n - 1}") from None
    try:
        expected = ann.lift(emb[sample], radius)
        ann.lift(category_vectors, radius)  # new items are indexed with these: each must have a lift
    except ValueError as e:
        raise ReleaseError(f"{mpath}: hnsw.radius does not cover the vectors ({e})") from None
    if vectors.shape != expected.shape or not np.allclose(vectors, expected, atol=1e-6):
        raise ReleaseError(f"{path / 'items.hnsw'}: indexed vectors differ from item_embeddings.npy")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one user (or a small batch) per run: threads cost more than they give
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path / "user_tower.onnx"), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for malformed models
        raise ReleaseError(f"{path / 'user_tower.onnx'}: onnxruntime cannot load it ({e})") from None
    outputs = {o.name for o in session.get_outputs()}
    if not {"interests", "n_interests"} <= outputs or "behaviors" not in {i.name for i in session.get_inputs()}:
        raise ReleaseError(f"{path / 'user_tower.onnx'}: expected input behaviors, outputs interests and n_interests")

    release = Release(
        path=path,
        version=str(manifest["version"]),
        manifest=manifest,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        item_ids=item_ids,
        item_index={item: i + 1 for i, item in enumerate(item_ids)},
        embeddings=emb,
        index=index,
        profile_fields={k: dict(v) for k, v in manifest["profile_fields"].items()},
        new_items=NewItems(index, float(radius), n, categories, category_vectors),
        head=ann.ExactHead.of(emb, head),
        session=session,
    )
    # smoke inference: two users of different lengths through the real tower
    max_len = release.max_len
    items = np.zeros((2, max_len), dtype=np.int64)
    items[0, -1] = 1
    items[1, -min(max_len, n) :] = np.arange(1, min(max_len, n) + 1)
    try:
        interests, n_int = release.user_tower(items)
    except Exception as e:
        raise ReleaseError(f"{path / 'user_tower.onnx'}: smoke inference failed ({e})") from None
    if interests.shape != (2, K, d) or interests.dtype != np.float32:
        raise ReleaseError(
            f"{path / 'user_tower.onnx'}: interests {interests.dtype} {list(interests.shape)}, expected float32 "
            f"[2, {K}, {d}] (K and d of the manifest and the embeddings)"
        )
    if n_int.shape != (2,) or not ((n_int >= 1) & (n_int <= K)).all() or not np.isfinite(interests).all():
        raise ReleaseError(f"{path / 'user_tower.onnx'}: smoke inference gave invalid output")
    return release
