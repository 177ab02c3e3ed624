"""The per-interest search and merge on a real hnswlib index: the paper's max-over-interests score,
history removed, top N best first, each item credited to the interest that scored it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.ann import ExactHead, build_index, head_size, radius
from model.new_items import NewItems
from model.release import Release
from stream.messages import MessageError, UserInterests
from stream.worker.recall import recall, recall_batch


@pytest.fixture(scope="module")
def release() -> Release:
    """A release of 300 random items, no tower (recall never runs it)."""
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(300, 8)).astype(np.float32)
    index = build_index(emb, radius(emb), M=16, ef_construction=200, seed=1)
    index.set_ef(300)  # exhaustive enough to compare with brute force
    ids = [f"item-{i}" for i in range(300)]
    return Release(path=Path("."), version="test", manifest={}, manifest_sha256="", item_ids=ids,
                   item_index={x: i + 1 for i, x in enumerate(ids)}, embeddings=emb, index=index, profile_fields={},
                   new_items=NewItems(index, radius(emb), 300, [], np.zeros((1, 8), np.float32)),
                   head=ExactHead.of(emb, head_size(300)), session=None)


def brute_force(release: Release, interests: np.ndarray, history: set[str], n: int) -> list[str]:
    scores = (release.embeddings @ interests.T).max(axis=1)
    order = np.argsort(-scores)
    return [release.item_ids[i] for i in order if release.item_ids[i] not in history][:n]


def test_matches_brute_force_max_over_interests(release: Release) -> None:
    rng = np.random.default_rng(5)
    interests = rng.normal(size=(3, 8)).astype(np.float32)
    out = recall(release, interests, set(), 20)
    assert [c["item_id"] for c in out] == brute_force(release, interests, set(), 20)
    scores = [c["score"] for c in out]
    assert scores == sorted(scores, reverse=True)
    for c in out:
        row = release.item_index[c["item_id"]] - 1
        per_interest = release.embeddings[row] @ interests.T
        assert c["interest"] == int(np.argmax(per_interest))
        assert c["score"] == pytest.approx(float(per_interest.max()), abs=1e-4)


def test_history_is_excluded_and_n_still_returned(release: Release) -> None:
    interests = release.embeddings[:2].copy()
    top = [c["item_id"] for c in recall(release, interests, set(), 30)]
    history = set(top[:25]) | {"not-in-the-model"}
    out = [c["item_id"] for c in recall(release, interests, history, 30)]
    assert len(out) == 30 and not history & set(out)
    assert out == brute_force(release, interests, history, 30)


def test_n_larger_than_the_catalog(release: Release) -> None:
    out = recall(release, release.embeddings[:1], {"item-0"}, 1000)
    assert len(out) == 299 and "item-0" not in {c["item_id"] for c in out}


def test_user_interests_reject_what_recall_cannot_use() -> None:
    fields = '"user_id": "u", "model_version": "v", "seq_len": 3, "event_ts": 1.0, "computed_ts": 2.0'
    good = UserInterests.from_json(b'{' + fields.encode() + b', "interests": [[1.0, 2.0]], "history": ["a"]}')
    assert good.interests.shape == (1, 2) and good.history == ["a"] and not good.refresh
    again = UserInterests.from_json(good.to_json())
    assert (again.interests == good.interests).all() and again.seq_len == 3 and again.event_ts == 1.0
    for bad in (b"nope", b"[]", b'{"user_id": "u", "interests": [[1.0]]}',
                b'{"user_id": "u", "model_version": "v", "interests": []}',
                b'{"user_id": "u", "model_version": "v", "interests": [[1.0], [1.0, 2.0]]}',
                b'{"user_id": "u", "model_version": "v", "interests": [["a"]]}',
                b'{' + fields.encode() + b', "interests": [[NaN]]}',
                b'{' + fields.replace('"seq_len": 3', '"seq_len": "3"').encode() + b', "interests": [[1.0]]}',
                b'{' + fields.encode() + b', "interests": [[1.0]], "history": [1]}'):
        with pytest.raises(MessageError):
            UserInterests.from_json(bad)


def test_a_batch_of_users_with_different_interest_counts_equals_each_user_alone(release: Release) -> None:
    """One hnswlib query for the interests of several users (K'u = 1, 3, 2, 4): each user's list is the one
    `recall` gives that user alone, and the brute-force max over that user's interests only."""
    rng = np.random.default_rng(11)
    users = [(rng.normal(size=(k, 8)).astype(np.float32), set(release.item_ids[k * 7:k * 7 + 5])) for k in (1, 3, 2, 4)]
    batch = recall_batch(release, users, 15)
    assert len(batch) == len(users)
    for (interests, history), got in zip(users, batch, strict=True):
        assert got == recall(release, interests, history, 15)
        assert [c["item_id"] for c in got] == brute_force(release, interests, history, 15)
        assert max(c["interest"] for c in got) < interests.shape[0]  # never credited to another user's row
    # the users' lists differ: rows were not shared between users
    assert len({tuple(c["item_id"] for c in got) for got in batch}) == len(users)
