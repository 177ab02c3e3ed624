"""`mindstream eval --freshness` (model/evaluate.py): interests computed from a history that lags by m behaviors."""

from __future__ import annotations

import json

import numpy as np

from model.data import Vocab, leave_one_out, load_dataset
from model.evaluate import freshness, lagged_history, train_model
from model.mind import MINDConfig
from model.train import TrainConfig
from stream.cli import main


def test_lag_zero_is_the_test_input_and_a_lag_drops_the_most_recent_behaviors(shared_data):
    data = load_dataset(shared_data / "ml-100k")
    split = leave_one_out(data, Vocab.build(data), max_len=50)
    assert np.array_equal(lagged_history(split.test_exclude, 0, 50), split.test_items)
    history = np.array([[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6]])
    assert lagged_history(history, 2, 3).tolist() == [[0, 5, 6], [2, 3, 4]]
    assert lagged_history(history, 0, 8).tolist() == [[0, 0, 0, 0, 5, 6, 7, 8], [0, 0, 1, 2, 3, 4, 5, 6]]
    assert lagged_history(history, 4, 6).tolist() == [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 2]]


def _drifting_users(path, n_users=300):
    # users whose taste moves: eight items of one cluster of 20, then eight of another, so an up-to-date history
    # predicts the next item (of the second cluster) and one that lags by 10 (only the first cluster) cannot
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,ts"]
    for u in range(n_users):
        first, second = rng.choice(8, 2, replace=False) * 20
        seq = list(rng.choice(20, 8, replace=False) + first) + list(rng.choice(20, 8, replace=False) + second)
        lines += [f"u{u},i{item},{t}" for t, item in enumerate(seq)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_a_lagging_history_loses_the_users_new_interest(tmp_path):
    _drifting_users(tmp_path / "clicks.csv")
    data = load_dataset(tmp_path / "clicks.csv")
    split = leave_one_out(data, Vocab.build(data), max_len=50)
    cfg = MINDConfig(d=16, hidden=(32,), sampler="full")
    model, _ = train_model("mind_k", split, cfg, TrainConfig(epochs=10, lr=1e-2, progress=False, threads=1), 0)
    report = freshness(split, model)
    assert report["users"] == report["all_test_users"] == 300  # 15 behaviors before the target, > 10
    hr = {m: x["HR@50"] for m, x in report["lags"].items()}
    assert list(hr) == [0, 1, 2, 5, 10]
    # m = 0 ranks the new cluster's items high; m = 10 sees only the old cluster
    assert hr[0] > 0.7 and hr[10] < hr[0] - 0.3, hr


def test_freshness_report(tmp_path):
    _drifting_users(tmp_path / "drift" / "clicks.csv", n_users=40)
    out = tmp_path / "out"
    rc = main(["eval", "--freshness", "--data", str(tmp_path / "drift" / "clicks.csv"), "--epochs", "1", "--quiet",
               "--device", "cpu", "--set", "d=8", "--set", "hidden=16", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "freshness.json").read_text())["results"]["drift"]
    assert list(report["lags"]) == ["0", "1", "2", "5", "10"] and report["users"] == 40
    md = (out / "freshness.md").read_text()
    assert "| 10 |" in md and "mindstream eval" in md
    assert (out / "freshness.png").stat().st_size > 0
