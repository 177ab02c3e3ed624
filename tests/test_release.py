"""Model releases (model/release.py): ONNX parity, round trip, and rejection of bad releases."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import hnswlib
import numpy as np
import pytest
import torch

from model.ann import build_index, lift, lift_queries
from model.data import Vocab, leave_one_out, load_dataset
from model.mind import MINDConfig
from model.release import (
    ReleaseError,
    current_release_dir,
    load_release,
    set_current,
    sha256_file,
    write_release,
)
from model.train import TrainConfig, build_model, fit


@pytest.fixture(scope="module")
def briefly_trained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """MIND trained for one epoch on a slice of MovieLens-100K's training samples, and its release."""
    data = load_dataset(shared_data / "ml-100k")
    vocab = Vocab.build(data)
    split = leave_one_out(data, vocab, max_len=50)
    small = dataclasses.replace(
        split,
        train_items=split.train_items[:8000],
        train_profile=split.train_profile[:8000],
        train_target=split.train_target[:8000],
    )
    model = build_model("mind", MINDConfig(d=32, K=4, max_len=50, hidden=(64,), profile_dim=8), small)
    result = fit(model, small, TrainConfig(epochs=1, batch_size=256, threads=1, progress=False))
    model.load_state_dict(result.state_dict)
    model.eval()
    root = tmp_path_factory.mktemp("parity")
    path = write_release(model, vocab, root, data_summary=data.summary(), metrics={"valid_HR@50": 0.0})
    return model, split, path


def test_onnx_matches_torch_on_real_sequences_of_varied_length(briefly_trained):
    model, split, path = briefly_trained
    release = load_release(path)
    lengths = (split.test_items > 0).sum(1)
    assert lengths.min() < 50 and lengths.max() == 50  # real users, short and long
    for batch, L in ((1, 50), (7, 50), (64, 23), (300, 5), (3, 1)):
        items = np.ascontiguousarray(split.test_items[:batch, -L:])
        profile = split.profile[:batch]
        ort_int, ort_n = release.user_tower(items, profile)
        with torch.no_grad():
            t_int, t_n = model.user_tower(torch.as_tensor(items), torch.as_tensor(profile))
            t_w = model.coupling(torch.as_tensor(items), torch.as_tensor(profile))
        assert ort_int.shape == (batch, 4, 32) and ort_int.dtype == np.float32
        assert np.abs(ort_int - t_int.numpy()).max() <= 1e-4
        assert np.array_equal(ort_n, t_n.numpy())
        assert np.abs(release.coupling(items, profile) - t_w.numpy()).max() <= 1e-4
    # several interests do occur, and each user's count follows K'u
    items = split.test_items[:200]
    _, n = release.user_tower(items, split.profile[:200])
    expected = np.clip(np.floor(np.log2(np.maximum((items > 0).sum(1), 1))), 1, 4)
    assert np.array_equal(n, expected)


def test_item_side_matches_the_model(briefly_trained):
    model, split, path = briefly_trained
    release = load_release(path)
    with torch.no_grad():
        emb = model.item_embeddings()[1:].numpy()
    assert np.allclose(release.embeddings, emb, atol=1e-6)
    assert release.item_ids == split.vocab.item_ids
    # the ANN index answers like brute-force inner product for most queries
    q = release.embeddings[:50]
    labels, _ = release.index.knn_query(lift_queries(q), k=10)
    exact = np.argsort(-(q @ release.embeddings.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(labels, exact, strict=True)])
    assert recall >= 0.9


def test_round_trip_of_the_ml100k_release(ml100k_release: Path, shared_data: Path):
    release = load_release(ml100k_release)
    m = release.manifest
    assert release.version == ml100k_release.name
    assert current_release_dir(ml100k_release.parent) == ml100k_release
    assert m["item_count"] == 1682 and release.embeddings.shape == (1682, m["d"])
    for key in ("d", "K", "max_len", "r", "p"):
        assert key in m["hyperparameters"]
    assert set(m["files"]) == {"user_tower.onnx", "item_embeddings.npy", "item_ids.txt", "items.hnsw",
                               "item_categories.json", "category_embeddings.npy"}
    assert release.item_categories["1"] == load_dataset(shared_data / "ml-100k").item_categories["1"]
    assert set(release.profile_fields) == {"age", "gender", "occupation"}
    assert 0 < m["metrics"]["test_HR@50"] < 1 and m["data"]["users"] == 943
    # better than chance (50 of 1682 items) after a brief training
    assert m["metrics"]["test_HR@50"] > 2 * 50 / 1682
    # encode a real user and run the tower
    data = load_dataset(shared_data / "ml-100k")
    hist = release.encode_history(data.sequences["1"])
    interests, n = release.user_tower(hist[None, :], release.encode_profile(data.user_profile["1"])[None, :])
    assert interests.shape == (1, m["K"], m["d"]) and n[0] == m["K"]
    assert json.loads((ml100k_release / "manifest.json").read_text())["version"] == release.version


@pytest.fixture
def copy_of(ml100k_release: Path, tmp_path: Path):
    dst = tmp_path / ml100k_release.name
    shutil.copytree(ml100k_release, dst)
    return dst


def _rewrite_checksums(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"] = {name: sha256_file(path / name) for name in manifest["files"]}
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["item_embeddings.npy", "item_categories.json"])
def test_tampered_file_is_rejected(copy_of: Path, name: str):
    f = copy_of / name
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ReleaseError, match="sha256 mismatch"):
        load_release(copy_of)


def test_missing_file_and_bad_manifest_are_rejected(copy_of: Path):
    (copy_of / "items.hnsw").unlink()
    with pytest.raises(ReleaseError, match="missing"):
        load_release(copy_of)
    (copy_of / "manifest.json").write_text("{not json")
    with pytest.raises(ReleaseError, match="not valid JSON"):
        load_release(copy_of)


def test_a_release_of_an_older_format_or_a_radius_short_of_its_vectors_is_rejected(copy_of: Path):
    manifest = json.loads((copy_of / "manifest.json").read_text())
    old = {**manifest, "format": 2}  # its index held the raw vectors: hnswlib would read it at the wrong width
    (copy_of / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(ReleaseError, match="format 2, this version reads 3"):
        load_release(copy_of)
    manifest["hnsw"]["radius"] *= 0.5
    (copy_of / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ReleaseError, match="hnsw.radius does not cover the vectors"):
        load_release(copy_of)


def test_the_exact_head_comes_from_the_manifest_and_a_bad_one_is_rejected(copy_of: Path):
    manifest = json.loads((copy_of / "manifest.json").read_text())
    assert len(load_release(copy_of).head.labels) == manifest["hnsw"]["exact_head"] > 0
    for bad in (-1, manifest["item_count"] + 1, 2.5, "10", True):
        hnsw = {**manifest["hnsw"], "exact_head": bad}
        (copy_of / "manifest.json").write_text(json.dumps({**manifest, "hnsw": hnsw}))
        with pytest.raises(ReleaseError, match="hnsw.exact_head must be an item count"):
            load_release(copy_of)
    del manifest["hnsw"]["exact_head"]  # written before the head: the graph alone, as it was served then
    (copy_of / "manifest.json").write_text(json.dumps(manifest))
    assert len(load_release(copy_of).head.labels) == 0


def test_embeddings_of_the_wrong_dimension_are_rejected(copy_of: Path):
    emb = np.load(copy_of / "item_embeddings.npy")
    np.save(copy_of / "item_embeddings.npy", np.concatenate([emb, emb[:, :1]], axis=1))
    _rewrite_checksums(copy_of)  # checksums alone would not catch a release built wrong
    with pytest.raises(ReleaseError, match="expected float32"):
        load_release(copy_of)


def test_index_and_tower_disagreeing_with_embeddings_are_rejected(copy_of: Path):
    # embeddings, ids and index consistent with each other at d + 8, but the tower outputs d
    manifest = json.loads((copy_of / "manifest.json").read_text())
    d = manifest["d"]
    emb = np.load(copy_of / "item_embeddings.npy")
    wide = np.concatenate([emb, np.zeros((emb.shape[0], 8), np.float32)], axis=1)
    np.save(copy_of / "item_embeddings.npy", wide)
    manifest["d"] = d + 8
    (copy_of / "manifest.json").write_text(json.dumps(manifest))
    _rewrite_checksums(copy_of)
    with pytest.raises(ReleaseError, match="index holds"):
        load_release(copy_of)
    build_index(wide, manifest["hnsw"]["radius"], M=16, ef_construction=200).save_index(str(copy_of / "items.hnsw"))
    cats = np.load(copy_of / "category_embeddings.npy")
    np.save(copy_of / "category_embeddings.npy", np.concatenate([cats, np.zeros((len(cats), 8), np.float32)], 1))
    _rewrite_checksums(copy_of)
    # the tower takes behavior embeddings of its own d: fed d + 8, the smoke inference fails
    with pytest.raises(ReleaseError, match="user_tower.onnx"):
        load_release(copy_of)


def test_an_index_of_other_vectors_or_labels_is_rejected(copy_of: Path):
    """Checked on a sample of rows (model.release.VERIFY_SAMPLE) plus the first and the last."""
    emb = np.load(copy_of / "item_embeddings.npy")
    n, d = emb.shape
    radius = json.loads((copy_of / "manifest.json").read_text())["hnsw"]["radius"]

    def index_of(vectors: np.ndarray, labels: np.ndarray) -> None:
        index = hnswlib.Index(space="ip", dim=d + 1)
        index.init_index(max_elements=len(vectors))
        index.add_items(lift(vectors, radius), labels)
        index.save_index(str(copy_of / "items.hnsw"))
        _rewrite_checksums(copy_of)

    other = emb.copy()
    other[n - 1] *= 0.5  # one row off (and still within the radius): the last row is always in the sample
    index_of(other, np.arange(n))
    with pytest.raises(ReleaseError, match="indexed vectors differ"):
        load_release(copy_of)
    index_of(emb, np.arange(1, n + 1))  # labels shifted by one: label 0 is missing
    with pytest.raises(ReleaseError, match="labels are not the row numbers"):
        load_release(copy_of)
    index_of(emb, np.arange(n))  # and the same release, put right, loads
    assert load_release(copy_of).index.get_current_count() == n


def test_pickled_embeddings_are_refused(copy_of: Path):
    obj = np.empty(3, dtype=object)
    np.save(copy_of / "item_embeddings.npy", obj, allow_pickle=True)
    _rewrite_checksums(copy_of)
    with pytest.raises(ReleaseError, match="without pickle"):
        load_release(copy_of)


def test_current_is_replaced_atomically(ml100k_release: Path, copy_of: Path):
    root = copy_of.parent
    with pytest.raises(ReleaseError):
        set_current(root, "no-such-version")
    assert not (root / "CURRENT").exists()
    set_current(root, copy_of.name)
    assert current_release_dir(root) == copy_of
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []


def test_release_of_the_serving_aligned_options_records_them_and_keeps_onnx_parity(shared_data: Path, tmp_path: Path):
    # objective, repel and the whole-history interest change training only, or (whole_history) the routing
    # graph: the exported tower must still match torch, and the manifest says how the model was trained
    data = load_dataset(shared_data / "ml-100k")
    vocab = Vocab.build(data)
    split = leave_one_out(data, vocab, max_len=50)
    cfg = MINDConfig(d=16, K=4, max_len=50, hidden=(32,), profile_dim=4, objective="logsumexp", tau=0.2,
                     repel=0.5, whole_history=True)
    model = build_model("mind", cfg, split).eval()
    path = write_release(model, vocab, tmp_path, data_summary=data.summary(), metrics={})
    release = load_release(path)
    hyper = release.manifest["hyperparameters"]
    assert (hyper["objective"], hyper["tau"], hyper["repel"], hyper["whole_history"]) == ("logsumexp", 0.2, 0.5, True)
    items, profile = np.ascontiguousarray(split.test_items[:64, -30:]), split.profile[:64]
    ort_int, ort_n = release.user_tower(items, profile)
    with torch.no_grad():
        t_int, t_n = model.user_tower(torch.as_tensor(items), torch.as_tensor(profile))
        t_w = model.coupling(torch.as_tensor(items), torch.as_tensor(profile))
    assert np.abs(ort_int - t_int.numpy()).max() <= 1e-4 and np.array_equal(ort_n, t_n.numpy())
    assert np.abs(release.coupling(items, profile) - t_w.numpy()).max() <= 1e-4
