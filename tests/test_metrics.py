"""model/metrics.py: ranking against all items with the history removed, ties, NDCG, chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.metrics import evaluate_scorer, rank_metrics, target_ranks


def test_history_items_and_padding_leave_the_ranking():
    # items 1..5; user history {2, 3}; target 4
    scores = np.array([[9.0, 1.0, 8.0, 7.0, 5.0, 6.0]])
    hist = np.array([[0, 2, 3]])
    # without exclusion items 2, 3, 5 (and padding 0) beat the target; with it only item 5 does
    assert target_ranks(scores, np.array([4]), np.zeros((1, 1), dtype=np.int64)).tolist() == [3.0]
    assert target_ranks(scores, np.array([4]), hist).tolist() == [1.0]


def test_target_is_never_removed_even_if_in_history():
    scores = np.array([[0.0, 3.0, 2.0, 1.0]])
    assert target_ranks(scores, np.array([2]), np.array([[2, 1]])).tolist() == [0.0]


def test_ties_count_half():
    scores = np.array([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0]])  # five items tie
    assert target_ranks(scores, np.array([3]), np.zeros((1, 1), dtype=np.int64)).tolist() == [2.0]


def test_hr_and_ndcg_values():
    n_items = 200
    scores = np.tile(-np.arange(n_items + 1, dtype=np.float32), (3, 1))  # item i has rank i - 1
    targets = np.array([1, 30, 150])
    m = rank_metrics(scores, targets, np.zeros((3, 1), dtype=np.int64))
    assert m["HR@10"] == pytest.approx(1 / 3)
    assert m["HR@50"] == pytest.approx(2 / 3)
    assert m["HR@100"] == pytest.approx(2 / 3)
    assert m["NDCG@50"] == pytest.approx((1.0 + 1 / math.log2(29 + 2)) / 3)


def test_chunked_evaluation_equals_one_batch():
    rng = np.random.default_rng(0)
    n_users, n_items = 37, 120
    emb = rng.normal(size=(n_items + 1, 8)).astype(np.float32)
    items = rng.integers(0, n_items + 1, size=(n_users, 6))
    targets = rng.integers(1, n_items + 1, size=n_users)

    def score(batch_items, _profile):
        return emb[batch_items].sum(1) @ emb.T

    profile = np.zeros((n_users, 0), dtype=np.int64)
    whole = evaluate_scorer(score, items, profile, targets, items, chunk=1000)
    chunked = evaluate_scorer(score, items, profile, targets, items, chunk=5)
    assert whole == pytest.approx(chunked)
    assert 0 < whole["HR@100"] <= 1 and whole["HR@10"] <= whole["HR@50"] <= whole["HR@100"]


def test_oracle_scores_hit_everything():
    targets = np.array([3, 1, 2])
    scores = np.zeros((3, 4))
    scores[np.arange(3), targets] = 1.0
    m = rank_metrics(scores, targets, np.zeros((3, 1), dtype=np.int64))
    assert m == {"HR@10": 1.0, "HR@50": 1.0, "HR@100": 1.0, "NDCG@50": 1.0}
