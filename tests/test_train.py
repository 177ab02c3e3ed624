"""The training job (model/train.py): `mindstream train` end to end, early stopping, explain."""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.data import Vocab, leave_one_out, load_dataset
from model.explain import user_coupling
from model.mind import MINDConfig
from model.release import current_release_dir, load_release
from model.train import TrainConfig, build_model, fit
from stream.cli import main


@pytest.fixture
def clicks_csv(tmp_path: Path) -> Path:
    """A click log in the `clicks` topic's shape: 80 users, each browsing two of four item groups."""
    rng = random.Random(0)
    path = tmp_path / "clicks.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "ts", "category", "profile.segment"])
        for u in range(80):
            groups = rng.sample(range(4), 2)
            for t in range(12):
                g = rng.choice(groups)
                w.writerow([f"u{u}", f"g{g}-i{rng.randrange(10)}", 1000 * u + t, f"group{g}", f"s{u % 3}"])
    return path


def served_hit_rate(release, data_path: Path, n: int) -> float:
    """HR@n of the leave-one-out test targets (docs/evaluation.md), computed as serving computes scores:
    the release's ONNX tower gives K'u interests, an item's score is max_k e_i . v_u^k over item_embeddings.npy;
    the target ranks against every item not in the history, ties counted half."""
    data = load_dataset(data_path)
    hits = []
    for user, seq in data.sequences.items():
        if len(seq) < 3:
            continue
        history, target = seq[:-1], release.item_index[seq[-1]] - 1
        interests, k = release.user_tower(release.encode_history(history)[None],
                                          release.encode_profile(data.user_profile.get(user))[None])
        scores = (release.embeddings @ interests[0, : int(k[0])].T).max(axis=1)
        keep = np.ones(len(scores), dtype=bool)
        keep[[release.item_index[i] - 1 for i in history]] = False
        keep[target] = True
        ranked = scores[keep]
        rank = (ranked > scores[target]).sum() + ((ranked == scores[target]).sum() - 1) / 2
        hits.append(rank < n)
    return float(np.mean(hits))


def test_mindstream_train_writes_a_loadable_release(clicks_csv: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("MINDSTREAM_K", "3")  # flags default to MINDSTREAM_* variables
    out = tmp_path / "models"
    rc = main(
        [
            "train",
            "--data",
            str(clicks_csv),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--d",
            "8",
            "--max-len",
            "10",
            "--hidden",
            "16",
            "--threads",
            "1",
            "--quiet",
            "--version",
            "v1",
        ]
    )
    assert rc == 0
    assert "release v1 written" in capsys.readouterr().out
    release = load_release(current_release_dir(out))
    m = release.manifest
    assert release.version == "v1" and m["d"] == 8 and m["K"] == 3 and m["max_len"] == 10
    assert m["hyperparameters"]["hidden"] == [16]
    assert m["item_count"] == 40 and m["data"]["users"] == 80
    assert m["metrics"]["epochs"] <= 2
    # the manifest's figure is the shipped model's: recomputed from the ONNX tower and item_embeddings.npy alone
    assert m["metrics"]["test_HR@10"] == pytest.approx(served_hit_rate(release, clicks_csv, 10), abs=1 / 80 + 1e-9)
    assert set(release.profile_fields) == {"segment"}
    assert set(m["categories"]) == {f"group{g}" for g in range(4)}


def test_early_stopping_keeps_the_best_epoch(shared_data: Path):
    data = load_dataset(shared_data / "ml-100k")
    split = leave_one_out(data, Vocab.build(data), max_len=10)
    model = build_model("youtube_dnn", MINDConfig(d=8, max_len=10, hidden=(8,)), split)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # lr = 0: validation HR@50 never improves after epoch 1, so training stops after 1 + patience epochs
    started = time.perf_counter()
    result = fit(model, split, TrainConfig(epochs=10, lr=0.0, patience=2, batch_size=4096, threads=1, progress=False))
    elapsed = time.perf_counter() - started
    assert result.epochs == 3 and result.best_epoch == 1 and len(result.history) == 3
    assert 0 < result.best_valid_hr50 == result.history[0]["valid_HR@50"]
    # the timing figures of the manifest: within the call's own duration; every sample once per epoch
    assert 0 < result.train_seconds <= elapsed
    assert result.samples_per_s == pytest.approx(3 * len(split.train_target) / result.train_seconds)
    assert all(torch.equal(before[k], v) for k, v in result.state_dict.items())


def test_explain_draws_the_coupling_heatmap(ml100k_release: Path, shared_data: Path, tmp_path: Path, capsys):
    release = load_release(ml100k_release)
    data = load_dataset(shared_data / "ml-100k")
    ids, w, k = user_coupling(release, data.sequences["1"], data.user_profile["1"])
    assert ids == data.sequences["1"][-release.max_len :]
    assert w.shape == (len(ids), k) and k == release.K
    assert np.allclose(w.sum(1), 1.0, atol=1e-5)  # each behavior's unit of weight over the K'u interests
    png = tmp_path / "user1.png"

    def explain(user: str) -> int:
        args = ["--release", str(ml100k_release), "--data", str(shared_data / "ml-100k"), "--user", user]
        return main(["explain", *args, "--out", str(png)])

    assert explain("1") == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert explain("nobody") == 2  # an expected error: one line, no traceback (stream/errors.py)
    assert capsys.readouterr().err == f"mindstream explain: {shared_data / 'ml-100k'}: no user 'nobody'\n"
    assert json.loads((ml100k_release / "manifest.json").read_text())["K"] == k
