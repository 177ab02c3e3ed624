"""New items in real time (docs/ARCHITECTURE.md, "New items"): an item the served release was not trained on is
given its category's vector, indexed in the served version's hnswlib index and recalled, without a restart or a
new release. Real parts: releases trained on the click simulator and written by model/release.py, onnxruntime,
hnswlib, and for the end-to-end tests the embedded Tansu broker and `mindstream worker` subprocesses.

Two releases of one simulated catalog: `old` was trained without the clicks on HELD items (new items to it),
`trained` on every click (HELD are ordinary items there).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from infra.measure import metric_value
from infra.processes import wait_until
from model.data import DataError
from model.mind import MINDConfig
from model.new_items import NewItems
from model.release import Release, load_release, set_current
from model.train import TrainConfig, train_release
from stream import topology
from stream.commands.announce import announcement_for, publish
from stream.commands.produce import produce_items
from stream.commands.retrain import write_training_set
from stream.commands.simulate import ClickSimulator, SimConfig, category_id, item_id
from stream.events import Click as EventClick
from stream.messages import CatalogItem, MessageError
from stream.topic_reader import TopicLog
from stream.worker.catalog import read_catalog
from stream.worker.hotswap import OK, handle
from stream.worker.recall import recall_batch
from stream.worker.releases import ReleaseRegistry
from tests.streamkit import Worker, broker_with_topics

SIM = SimConfig(n_users=1500, n_items=2000, n_categories=20, clicks_per_user=30, seed=1)
HELD = [item_id(i) for i in range(10)]  # left out of the `old` release's training clicks
MODEL = MINDConfig(d=32, K=4, max_len=20, hidden=(64,), profile_dim=4)
TRAIN = TrainConfig(epochs=5, batch_size=512, threads=1, progress=False)
TOP_N = 50
PARTITIONS = 2


@pytest.fixture(scope="module")
def sim() -> ClickSimulator:
    return ClickSimulator(SIM)


def category_of(sim: ClickSimulator, item: str) -> str:
    return category_id(sim.item_category(int(item[1:])))


def items_of(sim: ClickSimulator, release: Release, category: str, n: int) -> list[str]:
    """`n` trained items of `category` (the most clicked first: the simulator's popular items have low ids)."""
    return [i for i in release.item_ids if category_of(sim, i) == category][:n]


@pytest.fixture(scope="module")
def releases(sim: ClickSimulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("new-items")
    events = list(sim.events())
    held = set(HELD)
    paths = {}
    for name, keep in (("old", lambda e: e["item_id"] not in held), ("trained", lambda e: True)):
        data = tmp / f"{name}.jsonl"
        data.write_text("".join(json.dumps(e) + "\n" for e in events if keep(e)))
        paths[name] = train_release(data, tmp / "models", MODEL, TRAIN, version=name)
    set_current(tmp / "models", "old")
    return paths


def top(release: Release, history: list[str], n: int = TOP_N) -> list[str]:
    """The candidates recall gives a user of `history` under `release` (the worker's own functions)."""
    behaviors, mask = release.encode_behaviors(history)
    interests, k = release.tower(behaviors[None], mask[None])
    return [c["item_id"] for c in recall_batch(release, [(interests[0][: int(k[0])], history)], n)[0]]


# ---------------------------------------------------------------------------------------------- the pieces


def test_a_new_item_gets_its_category_vector_and_is_recalled_for_users_of_that_category(
        releases: dict[str, Path], sim: ClickSimulator) -> None:
    release = load_release(releases["old"])
    new = HELD[0]
    category = category_of(sim, new)
    assert new not in release.item_index and top(release, items_of(sim, release, category, 15)).count(new) == 0
    assert release.new_items.add(new, category)
    cats = np.load(releases["old"] / "category_embeddings.npy")
    assert np.array_equal(release.vector(new), cats[release.manifest["categories"].index(category) + 1])
    assert release.label(new) == len(release.item_ids)  # the first label after the trained items
    assert new in top(release, items_of(sim, release, category, 15))
    # an unknown category gives no vector; the item stays unknown
    assert not release.new_items.add("x-1", "no-such-category") and not release.knows("x-1")


def test_a_click_on_a_new_item_moves_the_users_interests(releases: dict[str, Path], sim: ClickSimulator) -> None:
    release = load_release(releases["old"])
    new = HELD[1]
    category = category_of(sim, new)
    # one earlier click elsewhere: a single behavior among many seldom gets an interest of its own in MIND's
    # routing (K'u = log2 |Iu|), so the test user is a new one
    history = items_of(sim, release, sorted({category_of(sim, i) for i in release.item_ids} - {category})[0], 1)
    before_b, before_m = release.encode_behaviors(history + [new])
    before, _ = release.tower(before_b[None], before_m[None])
    assert not any(category_of(sim, i) == category for i in top(release, history + [new]))
    release.new_items.add(new, category)
    after_b, after_m = release.encode_behaviors(history + [new])
    after, _ = release.tower(after_b[None], after_m[None])
    assert after_m.sum() == before_m.sum() + 1 and np.abs(after - before).max() > 1e-3
    assert any(category_of(sim, i) == category for i in top(release, history + [new]))


def test_new_items_are_bounded_and_the_oldest_go(releases: dict[str, Path]) -> None:
    release = load_release(releases["old"])
    n = len(release.item_ids)
    categories = release.manifest["categories"]
    release.new_items.capacity = 3
    for k in range(5):
        assert release.new_items.add(f"n{k}", categories[k % 2])
    assert [i for i in (f"n{k}" for k in range(5)) if release.knows(i)] == ["n2", "n3", "n4"]
    # one hnswlib element per category (its anchor), whatever the number of items: the index stays bounded
    assert release.index.get_current_count() == n + 2
    assert len({release.label(f"n{k}") for k in (2, 3, 4)}) == 3
    rows = release.search(release.vector("n4")[None], 50)
    found = [release.item_id(int(lab)) for lab in rows[0][0]]
    assert {"n2", "n4"} <= set(found) and not {"n0", "n1"} & set(found)
    assert found.index("n4") < found.index("n2")  # a category's new items newest first, with the same score
    dist = dict(zip(found, rows[0][1].tolist(), strict=True))
    assert dist["n4"] == dist["n2"]
    # re-categorised: the item moves to the other category's vector
    assert release.new_items.add("n4", categories[1]) and np.array_equal(release.vector("n4"), release.vector("n3"))


class _Probe:
    """An hnswlib index whose every call records whether another call was in progress at the same time."""

    def __init__(self, index) -> None:
        self.index = index
        self.active = 0
        self.overlaps = 0
        self.calls: dict[str, int] = {}
        self._count = threading.Lock()

    def _call(self, name: str, *args, **kwargs):
        with self._count:
            self.active += 1
            self.overlaps += self.active > 1
            self.calls[name] = self.calls.get(name, 0) + 1
        try:
            time.sleep(0.0002)  # widen the window a concurrent call would fall into
            return getattr(self.index, name)(*args, **kwargs)
        finally:
            with self._count:
                self.active -= 1

    def __getattr__(self, name: str):
        return lambda *a, **k: self._call(name, *a, **k)


def test_index_writes_and_searches_never_overlap() -> None:
    """Adds (a resize, then an anchor per new category) from one thread, searches from two others, as a search
    run off the event loop would meet an add made on it. Real hnswlib; without the lock this crashes it."""
    from model.ann import build_index, radius

    rng = np.random.default_rng(0)
    n, d, n_categories = 2000, 16, 3000
    items = rng.normal(size=(n, d)).astype(np.float32)
    categories = rng.normal(size=(n_categories + 1, d)).astype(np.float32)
    index = build_index(items, radius(items, categories), M=16, ef_construction=100, seed=1)
    index.set_ef(100)
    new_items = NewItems(index, radius(items, categories), n, [f"c{c}" for c in range(n_categories)], categories)
    probe = _Probe(index)
    new_items.index = probe
    queries = np.ascontiguousarray(rng.normal(size=(4, d)).astype(np.float32))
    done = threading.Event()
    searched = [0, 0]
    errors: list[BaseException] = []

    def add() -> None:
        try:
            for k in range(n_categories):
                new_items.add(f"t{k}", f"c{k}")
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def search(slot: int) -> None:
        try:
            while not done.is_set():
                new_items.search(queries, 20)
                searched[slot] += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=add)] + [threading.Thread(target=search, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert probe.calls.get("resize_index", 0) == 1 and probe.calls["add_items"] == n_categories
    assert min(searched) > 10  # the searches really ran while the adds did
    assert probe.overlaps == 0
    assert index.get_current_count() == n + n_categories


def test_hot_swap_serves_the_releases_own_vector_and_keeps_untrained_new_items(
        releases: dict[str, Path], sim: ClickSimulator, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for path in releases.values():
        shutil.copytree(path, models / path.name)
    # a third release that was not trained on HELD either: `old` under another version
    again = models / "old-again"
    shutil.copytree(releases["old"], again)
    manifest = json.loads((again / "manifest.json").read_text())
    manifest["version"] = "old-again"
    (again / "manifest.json").write_text(json.dumps(manifest))
    set_current(models, "old")
    registry = ReleaseRegistry(models)
    registry.load_initial()
    new = HELD[2]
    category = category_of(sim, new)
    fans = items_of(sim, registry.current, category, 15)
    assert registry.add_item(new, category)
    assert new in top(registry.current, fans)

    assert asyncio.run(handle(announcement_for(models / "trained").to_json(), registry, models)) == OK
    trained = registry.current
    assert trained.version == "trained" and new not in trained.new_items
    assert np.array_equal(trained.vector(new), trained.embeddings[trained.item_index[new] - 1])
    old = registry.get("old")
    assert new in old.new_items  # messages stamped with the old version still find it in the old index

    assert asyncio.run(handle(announcement_for(again).to_json(), registry, models)) == OK
    assert registry.current.version == "old-again" and new in registry.current.new_items
    assert new in top(registry.current, fans)

    # every candidate's score is e_i . v_u^k in the message's own version: no list mixes two versions' vectors
    for release in (old, trained, registry.current):
        behaviors, mask = release.encode_behaviors(fans)
        interests, k = release.tower(behaviors[None], mask[None])
        vectors = interests[0][: int(k[0])]
        for c in recall_batch(release, [(vectors, fans)], TOP_N)[0]:
            assert abs(float(release.vector(c["item_id"]) @ vectors[c["interest"]]) - c["score"]) < 1e-4


def test_the_bound_comes_from_the_registry(releases: dict[str, Path]) -> None:
    registry = ReleaseRegistry(releases["old"].parent, max_new_items=2)
    registry.load_initial()
    category = registry.current.manifest["categories"][0]
    for k in range(4):
        registry.add_item(f"b{k}", category)
    assert len(registry.current.new_items) == 2 and list(registry.catalog) == ["b2", "b3"]
    # items the served release was trained on (a whole catalog announced on `items`) evict nothing
    for item in registry.current.item_ids[:10]:
        assert not registry.add_item(item, category)
    assert list(registry.catalog) == ["b2", "b3"]
    assert isinstance(registry.current.new_items, NewItems)


def test_id_dropout_trains_items_as_their_category_alone() -> None:
    """DropoutNet's option: in training a dropped item is its category mean; at serving every item is pooled."""
    import torch

    from model.mind import ItemEmbedding

    cats = torch.tensor([[0], [1], [2], [0]])  # item 3 has no category: its id embedding is never dropped
    emb = ItemEmbedding(3, 2, cats, torch.ones(4, dtype=torch.bool), 8, id_dropout=1.0)
    items = torch.tensor([1, 2, 3])
    emb.train()
    assert torch.allclose(emb(items)[:2], emb.cat_emb.weight[1:3])
    assert torch.allclose(emb(items)[2], emb.id_emb.weight[3])
    emb.eval()
    assert torch.allclose(emb(items)[:2], (emb.id_emb.weight[1:3] + emb.cat_emb.weight[1:3]) / 2)
    half = ItemEmbedding(1000, 1, torch.ones(1001, 1, dtype=torch.long), torch.ones(1001, dtype=torch.bool), 8,
                         id_dropout=0.3).train()
    dropped = torch.isclose(half(torch.arange(1, 1001)), half.cat_emb.weight[1]).all(-1).float().mean()
    assert 0.2 < float(dropped) < 0.4


def test_a_catalog_file_is_read_row_by_row_and_a_bad_row_names_its_line(tmp_path: Path) -> None:
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text('{"item_id": "a", "category": "c1"}\n\n{"item_id": "b", "category": "c2", "ts": 5}\n')
    assert list(read_catalog(jsonl)) == [CatalogItem("a", "c1"), CatalogItem("b", "c2", 5.0)]
    csv_file = tmp_path / "items.csv"
    csv_file.write_text("item_id,category,ts\na,c1,\nb,c2,7.5\n")
    assert list(read_catalog(csv_file)) == [CatalogItem("a", "c1"), CatalogItem("b", "c2", 7.5)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "a", "category": "c1"}\n{"category": "c2"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: item_id"):
        list(read_catalog(bad))
    for raw in (b"[1]", b'{"item_id": ""}', b'{"item_id": "a", "ts": "x"}', b"\xff"):
        with pytest.raises(MessageError):
            CatalogItem.from_json(raw)


def test_retrain_trains_new_items_with_their_catalog_category(tmp_path: Path) -> None:
    clicks = [EventClick("u1", "new-1", 1.0), EventClick("u1", "new-2", 2.0, category="c9"),
              EventClick("u1", "i1", 3.0)]
    write_training_set(tmp_path / "train.jsonl", clicks, categories={"new-1": "c3", "new-2": "c4"})
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    # the catalog fills a missing category; a click's own category wins
    assert [r.get("category") for r in rows] == ["c3", "c9", None]


# ---------------------------------------------------------------------------------------------- end to end


def click(producer: KafkaProducer, user: str, item: str, n: int, category: str | None = None) -> None:
    value = {"event_id": f"{user}-{n}", "user_id": user, "item_id": item, "ts": time.time()}
    if category is not None:
        value["category"] = category
    producer.send(topology.CLICKS.name, key=user.encode(), value=json.dumps(value).encode())


class Outputs:
    """The worker's output topics, read incrementally."""

    def __init__(self, bootstrap: str) -> None:
        self.candidates = TopicLog(bootstrap, topology.CANDIDATES.name)
        self.interests = TopicLog(bootstrap, topology.USER_INTERESTS.name)

    def latest(self, reader: TopicLog, user: str) -> dict | None:
        found = [json.loads(r.value) for r in reader.poll() if r.key == user.encode()]
        return found[-1] if found else None

    def close(self) -> None:
        self.candidates.close()
        self.interests.close()


@pytest.fixture(scope="module")
def e2e(releases: dict[str, Path], sim: ClickSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("new-items-e2e")
    models = releases["old"].parent
    with broker_with_topics(tmp / "broker.log", PARTITIONS, {"items": PARTITIONS, "model-releases": 1}) as broker:
        worker = Worker(broker.bootstrap, None, tmp / "state-1", tmp / "worker-1.log", PARTITIONS, TOP_N,
                        models_dir=models)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        out = Outputs(broker.bootstrap)
        # the restart test replaces state["worker"]: teardown stops whichever worker runs then
        state = {"broker": broker, "worker": worker, "producer": producer, "out": out, "tmp": tmp, "models": models}
        try:
            # warm up: the first rebalance takes a while on this broker
            release = load_release(releases["old"])
            click(producer, "warm", release.item_ids[0], 0)
            producer.flush()
            assert wait_until(lambda: out.latest(out.candidates, "warm") is not None, 240, [worker])
            state["release"] = release
            yield state
        finally:
            out.close()
            producer.close()
            state["worker"].stop()


def has_candidate(out: Outputs, user: str, item: str) -> bool:
    latest = out.latest(out.candidates, user)
    return latest is not None and item in {c["item_id"] for c in latest["items"]}


def test_e2e_an_item_announced_on_items_is_recalled_within_seconds(e2e: dict, sim: ClickSimulator) -> None:
    producer, out, worker, release = e2e["producer"], e2e["out"], e2e["worker"], e2e["release"]
    new = "fresh-" + HELD[3]
    category = category_of(sim, HELD[3])
    fans = items_of(sim, release, category, 15)
    for n, item in enumerate(fans[:-1]):
        click(producer, "fan-a", item, n)
    producer.flush()
    assert wait_until(lambda: (out.latest(out.candidates, "fan-a") or {}).get("items") is not None, 60, [worker])
    assert not has_candidate(out, "fan-a", new)
    announced = time.monotonic()
    producer.send(topology.ITEMS.name, key=new.encode(), value=CatalogItem(new, category).to_json())
    producer.flush()
    n = len(fans)
    # the user keeps clicking items of the category (no restart, no new release); one click a second
    while not has_candidate(out, "fan-a", new) and time.monotonic() - announced < 60:
        worker.check_alive()
        click(producer, "fan-a", fans[n % len(fans)], n)
        producer.flush()
        n += 1
        time.sleep(1.0)
    elapsed = time.monotonic() - announced
    assert has_candidate(out, "fan-a", new)
    print(f"announced on items -> in the user's candidates: {elapsed:.1f} s")
    (e2e["tmp"] / "announce_to_candidates_s.txt").write_text(f"{elapsed:.2f}\n")
    text = worker.metrics()
    assert metric_value(text, "mindstream_new_items_total", 'source="items"') >= 1
    assert metric_value(text, "mindstream_new_items_live") >= 1


def test_e2e_a_first_click_with_its_category_moves_interests_and_is_not_a_dead_letter(
        e2e: dict, sim: ClickSimulator) -> None:
    producer, out, worker, release = e2e["producer"], e2e["out"], e2e["worker"], e2e["release"]
    new = "fresh-" + HELD[4]
    category = category_of(sim, HELD[4])
    history = items_of(sim, release, sorted({category_of(sim, i) for i in release.item_ids} - {category})[0], 1)
    for n, item in enumerate(history):
        click(producer, "mixed-b", item, n)
    click(producer, "mystery-d", "no-such-item", 0)  # no category, no catalog entry: unknown, still valid
    producer.flush()
    assert wait_until(lambda: (out.latest(out.interests, "mixed-b") or {}).get("seq_len") == len(history), 60,
                      [worker])
    before = out.latest(out.interests, "mixed-b")
    before_c = out.latest(out.candidates, "mixed-b")
    assert before_c["event_ts"] == before["event_ts"]
    assert not any(category_of(sim, c["item_id"]) == category for c in before_c["items"])
    unknown_before = metric_value(worker.metrics(), "mindstream_events_total", 'status="unknown_item"')
    click(producer, "mixed-b", new, len(history), category=category)
    producer.flush()
    assert wait_until(lambda: (out.latest(out.candidates, "mixed-b") or {}).get("event_ts") != before["event_ts"]
                      and (out.latest(out.interests, "mixed-b") or {}).get("seq_len") == len(history) + 1, 60,
                      [worker])
    after = out.latest(out.interests, "mixed-b")
    assert np.abs(np.asarray(after["interests"])[:1] - np.asarray(before["interests"])[:1]).max() > 1e-3 \
        or len(after["interests"]) != len(before["interests"])
    top50 = out.latest(out.candidates, "mixed-b")["items"][:50]
    assert any(category_of(sim, c["item_id"]) == category for c in top50 if c["item_id"] in release.item_index)
    text = worker.metrics()
    assert metric_value(text, "mindstream_events_total", 'status="unknown_item"') >= unknown_before + 1
    assert metric_value(text, "mindstream_new_items_total", 'source="click"') >= 1
    # the worker announced the item to the catalog, so every worker (and a restart) knows it
    items = TopicLog(e2e["broker"].bootstrap, topology.ITEMS.name)
    try:
        assert wait_until(lambda: any(r.key == new.encode() and json.loads(r.value)["category"] == category
                                      for r in items.poll()), 30)
    finally:
        items.close()
    # clicks-dlq holds bad records only: neither unknown click is there
    dlq = TopicLog(e2e["broker"].bootstrap, topology.CLICKS_DLQ.name)
    try:
        time.sleep(2.0)
        records = dlq.poll(timeout_ms=1000)
        assert not [r for r in records if json.loads(r.value)["reason"] == "unknown_item"]
    finally:
        dlq.close()


def test_e2e_mindstream_produce_items_publishes_a_catalog_the_worker_indexes(e2e: dict, tmp_path: Path) -> None:
    worker = e2e["worker"]
    category = e2e["release"].manifest["categories"][0]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps({"item_id": f"cat-{k}", "category": category}) + "\n" for k in range(5))
                       + json.dumps({"item_id": "cat-x", "category": "no-such-category"}) + "\n")
    before = metric_value(worker.metrics(), "mindstream_new_items_total", 'source="items"')
    sent = produce_items(catalog, e2e["broker"].bootstrap, topology.ITEMS.name, PARTITIONS, progress=False)
    assert sent.sent == 6 and not sent.failed
    # five of them are new items; the one of a category the release does not know is not
    assert wait_until(lambda: metric_value(worker.metrics(), "mindstream_new_items_total", 'source="items"')
                      == before + 5, 60, [worker])


def test_e2e_a_worker_killed_and_restarted_on_an_empty_state_dir_still_recalls_new_items(
        e2e: dict, sim: ClickSimulator) -> None:
    """Runs after the two tests above: one item came from `items`, the other from a click only."""
    producer, out, release, tmp = e2e["producer"], e2e["out"], e2e["release"], e2e["tmp"]
    e2e["worker"].kill()
    worker = Worker(e2e["broker"].bootstrap, None, tmp / "state-2", tmp / "worker-2.log", PARTITIONS, TOP_N,
                    models_dir=e2e["models"])
    e2e["worker"] = worker
    news = {"fresh-" + HELD[3]: category_of(sim, HELD[3]), "fresh-" + HELD[4]: category_of(sim, HELD[4])}
    # the new items come back from the `items` topic alone (the state directory is empty)
    assert wait_until(lambda: worker.serving() and metric_value(worker.metrics(), "mindstream_new_items_total",
                                                                'source="items"') >= 7, 120, [worker])
    # new users, each a fan of one new item's category
    for k, category in enumerate(news.values()):
        for n, item in enumerate(items_of(sim, release, category, 15)):
            click(producer, f"restart-fan-{k}", item, n)
    producer.flush()
    assert wait_until(lambda: all(has_candidate(out, f"restart-fan-{k}", new) for k, new in enumerate(news)), 240,
                      [worker])


def test_e2e_a_hot_swap_keeps_new_items_and_serves_trained_ones_with_the_releases_vectors(
        e2e: dict, sim: ClickSimulator, releases: dict[str, Path]) -> None:
    """Runs last, on the restarted worker. HELD[5] is new to `old` and trained in `trained`; fresh-<HELD[3]> is
    trained in neither. After the swap, every candidate's score is its item's vector in the message's own
    version times that message's interest: no list mixes versions."""
    producer, out, worker, bootstrap = e2e["producer"], e2e["out"], e2e["worker"], e2e["broker"].bootstrap
    trained_item, untrained = HELD[5], "fresh-" + HELD[3]
    producer.send(topology.ITEMS.name, key=trained_item.encode(),
                  value=json.dumps({"item_id": trained_item, "category": category_of(sim, trained_item)}).encode())
    producer.flush()
    assert wait_until(lambda: metric_value(worker.metrics(), "mindstream_new_items_total", 'source="items"') >= 8,
                      60, [worker])
    publish(bootstrap, topology.MODEL_RELEASES.name, announcement_for(releases["trained"]))
    assert wait_until(lambda: 'mindstream_model_info{version="trained"} 1.0' in worker.metrics().splitlines(), 120,
                      [worker])
    versions = {name: load_release(path) for name, path in releases.items()}
    trained = versions["trained"]
    trained.new_items.add(untrained, category_of(sim, HELD[3]))  # as the worker's registry did on the swap
    # HELD[5] in a sequence: the worker's interests use the trained vector of `trained`, not the category's
    category = category_of(sim, trained_item)
    history = items_of(sim, trained, category, 5) + [trained_item]
    for n, item in enumerate(history):
        click(producer, "swap-clicker", item, n, category=category)
    # the untrained item stays recallable: a fan of its category is offered it
    for n, item in enumerate(items_of(sim, trained, category_of(sim, HELD[3]), 15)):
        click(producer, "swap-fan", item, n)
    producer.flush()
    assert wait_until(lambda: has_candidate(out, "swap-fan", untrained), 90, [worker])
    assert wait_until(lambda: (out.latest(out.interests, "swap-clicker") or {}).get("seq_len") == len(history), 90,
                      [worker])
    served = out.latest(out.interests, "swap-clicker")
    assert served["model_version"] == "trained"
    behaviors, mask = trained.encode_behaviors(history)
    own, k = trained.tower(behaviors[None], mask[None])
    behaviors[-1] = trained.new_items.category_vectors[trained.manifest["categories"].index(category) + 1]
    as_category, _ = trained.tower(behaviors[None], mask[None])
    got = np.asarray(served["interests"], dtype=np.float32)
    assert np.abs(got - own[0][: int(k[0])]).max() < 1e-4
    assert np.abs(got - as_category[0][: len(got)]).max() > 1e-3
    interests = {}
    for r in out.interests.poll():
        v = json.loads(r.value)
        interests[(v["user_id"], v["event_ts"])] = v
    checked = 0
    for r in out.candidates.poll():
        c = json.loads(r.value)
        if not c["user_id"].startswith("swap-"):
            continue
        assert c["model_version"] == "trained"
        i = interests[(c["user_id"], c["event_ts"])]
        assert i["model_version"] == c["model_version"]
        release = versions[c["model_version"]]
        for item in c["items"]:
            vector = release.vector(item["item_id"])
            score = float(np.asarray(i["interests"][item["interest"]], dtype=np.float32) @ vector)
            assert abs(score - item["score"]) < 1e-3, (item, score)
            checked += 1
    assert checked >= 2 * TOP_N
