"""ANN quality (model/ann.py): the recall of the served candidate list against exact search, the ef a release is
written with, and the ef a loaded release searches with."""

from __future__ import annotations

import json
from pathlib import Path

import hnswlib
import numpy as np
import pytest

from model import ann
from model.release import HNSW_EF_SEARCH, load_release
from stream.worker.recall import recall_batch
from tests.test_recall import release  # noqa: F401 (a fixture: 300 random items in a real hnswlib index)


def users(n: int, d: int, n_items: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(interests [K', d], history labels) of `n` random users with 1-4 interests and up to 30 seen items."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(rng.integers(1, 5), d)).astype(np.float32),
             rng.choice(n_items, rng.integers(0, 31), replace=False)) for _ in range(n)]


def test_an_exact_search_merged_as_the_worker_merges_has_recall_one() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(2000, 16)).astype(np.float32)
    flat = hnswlib.BFIndex(space="ip", dim=16)  # brute force: an exact search behind the same merge
    flat.init_index(max_elements=2000)
    flat.add_items(emb, np.arange(2000))
    queries = users(50, 16, 2000, seed=1)
    k = ann.search_k(2000, ann.TOP_N, [s for _, s in queries])
    lists = []
    for interests, seen in queries:
        labels, dist = flat.knn_query(interests, k=k)
        lists.append(ann.merge([(lab.astype(np.int64), dis) for lab, dis in zip(labels, dist, strict=True)],
                               seen, ann.TOP_N)[0])
    truth = [ann.exact(emb, interests, seen, ann.TOP_N) for interests, seen in queries]
    assert all(len(t) == ann.TOP_N and not np.isin(t, s).any() for t, (_, s) in zip(truth, queries, strict=True))
    assert ann.recall(lists, truth) == 1.0
    # and a list that misses items scores what it holds
    assert ann.recall([t[:90] for t in truth], truth) == pytest.approx(0.9)


def test_the_workers_lists_are_measured_against_exact_search(release) -> None:  # noqa: F811
    """recall_batch (what the worker publishes) on an index searched exhaustively equals the exact lists."""
    queries = users(40, 8, 300, seed=2)
    published = recall_batch(release, [(q, [release.item_ids[i] for i in s]) for q, s in queries], 50)
    got = [np.asarray([release.label(c["item_id"]) for c in cands]) for cands in published]
    truth = [ann.exact(release.embeddings, q, s, 50) for q, s in queries]
    assert ann.recall(got, truth) == 1.0
    assert ann.recall([g[::-1] for g in got], truth) == 1.0  # a set measure: the order does not count


def test_a_small_graph_loses_recall_and_a_larger_ef_wins_it_back() -> None:
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(20_000, 32)).astype(np.float32)  # uniform vectors: the hardest case for a graph
    index = ann.build_index(emb, ann.radius(emb), M=4, ef_construction=20, seed=1)
    recalls = ann.measure(index, emb, users(30, 32, 20_000, seed=5), efs=(10, 400))
    assert recalls[10] < 0.9 and recalls[400] > recalls[10]


def test_the_exact_head_holds_the_longest_items_and_scores_them_exactly() -> None:
    rng = np.random.default_rng(8)
    emb = rng.normal(size=(1000, 8)).astype(np.float32) * rng.uniform(0.2, 2.0, size=(1000, 1)).astype(np.float32)
    head = ann.ExactHead.of(emb, 30)
    assert list(head.labels) == list(np.argsort(-np.linalg.norm(emb, axis=1))[:30])
    q = rng.normal(size=(5, 8)).astype(np.float32)
    for row, (labels, dist) in zip(q, head.search(q, 10), strict=True):
        assert set(labels) == set(head.labels[np.argsort(-(emb[head.labels] @ row))[:10]])
        assert np.allclose(1.0 - dist, emb[labels] @ row, atol=1e-5)
    assert all(len(labels) == 30 for labels, _ in head.search(q, 100))  # never more than it holds
    assert all(len(labels) == 0 for labels, _ in ann.ExactHead.of(emb, 0).search(q, 10))
    assert ann.head_size(12_101) == 61 and ann.head_size(1_000_000) == ann.HEAD_MAX == 5000


def test_the_head_adds_to_what_the_graph_finds_and_a_head_of_every_item_is_exact() -> None:
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(20_000, 32)).astype(np.float32)
    index = ann.build_index(emb, ann.radius(emb), M=4, ef_construction=20, seed=1)
    queries = users(30, 32, 20_000, seed=5)
    graph = ann.measure(index, emb, queries, efs=(10,))[10]
    partial = ann.measure(index, emb, queries, efs=(10,), head=ann.ExactHead.of(emb, 2_000))[10]
    every = ann.measure(index, emb, queries, efs=(10,), head=ann.ExactHead.of(emb, len(emb)))[10]
    # a found item of the exact list outranks every item outside it, so adding results never loses one
    assert graph < 0.9 and partial >= graph and every == 1.0


def test_lifting_keeps_every_inner_product_and_refuses_a_vector_past_the_radius() -> None:
    rng = np.random.default_rng(6)
    emb = rng.normal(size=(500, 16)).astype(np.float32) * rng.uniform(0.1, 3.0, size=(500, 1)).astype(np.float32)
    r = ann.radius(emb)
    lifted, q = ann.lift(emb, r), rng.normal(size=(7, 16)).astype(np.float32)
    assert lifted.shape == (500, 17) and np.allclose(np.linalg.norm(lifted, axis=1), r, rtol=1e-5)
    assert np.allclose(lifted @ ann.lift_queries(q).T, emb @ q.T, atol=1e-5)
    with pytest.raises(ValueError, match="longer than the index's radius"):
        ann.lift(emb * 1.01, r)


def test_a_graph_of_lifted_vectors_finds_more_than_one_of_the_raw_vectors() -> None:
    """Clusters whose members share a long direction and differ by short random ones, as an untrained tower's
    items do (bench/synthetic_release.py before it trained): hnswlib's 'ip' graph over the raw vectors links items
    by length, not direction, and misses most of the exact lists; the same graph over the lifted vectors does not."""
    rng = np.random.default_rng(7)
    n_clusters, per, d = 20, 1000, 32
    centres = rng.normal(size=(n_clusters, d)) * 3 / np.sqrt(d)
    emb = ((np.repeat(centres, per, 0) + rng.normal(size=(n_clusters * per, d)) / np.sqrt(d)) / 2).astype(np.float32)
    queries = [(rng.normal(size=(rng.integers(1, 5), d)).astype(np.float32) / np.sqrt(d),
                rng.choice(len(emb), 20, replace=False)) for _ in range(60)]
    lifted = ann.measure(ann.build_index(emb, ann.radius(emb), M=8, ef_construction=100, seed=1), emb, queries,
                         efs=(100, 400))
    raw_index = hnswlib.Index(space="ip", dim=d)
    raw_index.init_index(max_elements=len(emb), ef_construction=100, M=8, random_seed=1)
    raw_index.add_items(emb, np.arange(len(emb)))
    truth = [ann.exact(emb, interests, seen, ann.TOP_N) for interests, seen in queries]
    for ef in (100, 400):
        raw_index.set_ef(ef)
        raw = [ann.merge([(lab.astype(np.int64), dist) for lab, dist in zip(*raw_index.knn_query(interests, k=120),
                                                                           strict=True)], seen, ann.TOP_N)[0]
               for interests, seen in queries]
        assert lifted[ef] > ann.recall(raw, truth) + 0.15


def test_the_smallest_ef_reaching_the_target_is_chosen() -> None:
    recalls = {50: 0.90, 100: 0.94, 150: 0.96, 200: 0.97, 400: 0.99}
    assert ann.choose_ef(recalls, 0.95) == 150
    assert ann.choose_ef(recalls, 0.5) == 50
    assert ann.choose_ef(recalls, 0.995) is None


def test_a_trained_release_records_the_ef_its_measurement_chose(ml100k_release: Path) -> None:
    hnsw = json.loads((ml100k_release / "manifest.json").read_text())["hnsw"]
    measured = {int(ef): r for ef, r in hnsw["recall_by_ef"].items()}
    # measured from the smallest ef up to the first that reaches the target, or all of them
    assert sorted(measured) == list(ann.EFS[:len(measured)]) and hnsw["recall_users"] > 0
    assert all(measured[ef] < hnsw["recall_target"] for ef in sorted(measured)[:-1])
    assert hnsw["recall_target"] == 0.95
    assert hnsw["ef_search"] == (ann.choose_ef(measured, hnsw["recall_target"]) or HNSW_EF_SEARCH)
    assert hnsw["recall_target_reached"] == (ann.choose_ef(measured, hnsw["recall_target"]) is not None)
    assert hnsw["recall_at_100"] == measured[hnsw["ef_search"]]
    assert load_release(ml100k_release).index.ef == hnsw["ef_search"]


def test_a_loaded_release_searches_with_the_manifests_ef(ml100k_release: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(ml100k_release, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["hnsw"]["ef_search"] = 123
    (copy / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_release(copy)
    assert loaded.index.ef == 123
    # a new item resizes the index (model/new_items.py): the ef stays
    assert loaded.new_items.add("an item not trained on", manifest["categories"][0])
    assert loaded.index.get_current_count() > loaded.manifest["item_count"] and loaded.index.ef == 123
    del manifest["hnsw"]["ef_search"]  # a manifest without the field: the default ef
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert load_release(copy).index.ef == HNSW_EF_SEARCH == 200


def test_the_ef_a_release_is_written_with_follows_its_target(tmp_path: Path) -> None:
    """A target every ef reaches gives the smallest ef; one none reaches, the default, flagged; the loaded index
    uses it."""
    import torch

    from model.data import Vocab
    from model.mind import MIND, MINDConfig
    from model.release import write_release

    n = 3000
    vocab = Vocab(item_ids=[f"i{i}" for i in range(n)], categories=[], item_category_lists=[[]] * (n + 1),
                  profile_fields={})
    torch.manual_seed(0)
    model = MIND(MINDConfig(d=16, K=4, max_len=10, hidden=(16,)), n)
    histories = np.random.default_rng(0).integers(1, n + 1, size=(40, 10))
    for target, ef in ((0.0, ann.EFS[0]), (1.01, HNSW_EF_SEARCH)):
        path = write_release(model, vocab, tmp_path, data_summary={}, metrics={}, make_current=False,
                             ef_check=ann.EfCheck(histories, np.zeros((40, 0), dtype=np.int64), target))
        hnsw = json.loads((path / "manifest.json").read_text())["hnsw"]
        assert hnsw["ef_search"] == ef and hnsw["recall_target"] == target and hnsw["recall_users"] == 40
        assert len(hnsw["recall_by_ef"]) == (1 if target == 0.0 else len(ann.EFS))
        assert hnsw["recall_target_reached"] == (target == 0.0)
        assert hnsw["exact_head"] == ann.head_size(n) == 15
        loaded = load_release(path)
        assert loaded.index.ef == ef
        assert list(loaded.head.labels) == list(ann.ExactHead.of(loaded.embeddings, 15).labels)


@pytest.mark.slow
def test_the_synthetic_release_is_trained_on_users_it_is_not_measured_on(tmp_path: Path) -> None:
    """bench/synthetic_release.py trains its tower on the simulator's users from FIRST_TRAIN_USER on; the users
    before, which the ef is chosen on and bench/ann.py measures, get candidates from their own categories."""
    from bench import synthetic_release
    from stream.commands.simulate import ClickSimulator, category_id

    n_items, n_categories = 5000, 50
    synthetic = load_release(synthetic_release.build(tmp_path, n_items, n_categories, train_users=1000))
    assert synthetic.manifest["data"]["users"] == 1000 and synthetic.manifest["hnsw"]["recall_target_reached"]
    sim = ClickSimulator(synthetic_release.sim_config(n_items, n_categories))
    shares = []
    for user, items in synthetic_release.simulated_histories(n_items, n_categories, 50).items():
        interests, n = synthetic.user_tower(synthetic.encode_history(items)[None])
        seen = np.asarray([synthetic.label(i) for i in set(items)])
        top = ann.exact(synthetic.embeddings, ann.kept_interests(interests[0], n[0]), seen, ann.TOP_N)
        own = {category_id(c) for c in sim.user_interests(int(user[1:]))}
        shares.append(np.mean([synthetic.item_categories[synthetic.item_ids[i]][0] in own for i in top]))
    # 0.56 here; the untrained tower of before (category vectors x3) gave 0.04, chance for 2-4 of 50 categories
    assert np.mean(shares) > 0.3
