"""model/evaluate.py: `mindstream eval` end to end on a small generated click log (seconds on CPU)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from model.evaluate import METHODS, parse_overrides
from stream.cli import main


def _click_log(path, n_users=40, n_items=30, length=8, seed=0):
    # two taste clusters so that there is something to learn
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,ts"]
    for u in range(n_users):
        pool = np.arange(n_items // 2) + (u % 2) * (n_items // 2)
        for t, item in enumerate(rng.choice(pool, size=length, replace=False)):
            lines.append(f"user{u},item{item},{1000 + t}")
    path.write_text("\n".join(lines) + "\n")


def mostpop_by_hand(path, n: int) -> float:
    """HR@n of MostPop under docs/evaluation.md's protocol, straight from a user_id,item_id,ts CSV:
    popularity = occurrences in the training parts (all but each user's last two items); the last item ranks
    against every item not in the user's history, ties counted half."""
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    seqs: dict[str, list[str]] = {}
    for user, item, _ts in sorted(rows, key=lambda r: (r[0], float(r[2]))):
        seqs.setdefault(user, []).append(item)
    catalog = {item for seq in seqs.values() for item in seq}
    pop = Counter(item for seq in seqs.values() for item in seq[:-2])
    hits = []
    for seq in seqs.values():
        target, history = seq[-1], set(seq[:-1]) - {seq[-1]}
        others = [pop[i] for i in catalog - history - {target}]
        rank = sum(p > pop[target] for p in others) + sum(p == pop[target] for p in others) / 2
        hits.append(rank < n)
    return sum(hits) / len(hits)


def test_eval_writes_reports_with_the_contract_schema(tmp_path):
    data_dir = tmp_path / "toy"
    data_dir.mkdir()
    _click_log(data_dir / "clicks.csv")
    out = tmp_path / "results"
    rc = main(["eval", "--data", str(data_dir / "clicks.csv"), "--seeds", "2", "--epochs", "1", "--quiet",
               "--device", "cpu", "--set", "d=8", "--set", "hidden=16", "--lr", "0.003", "--out", str(out)])
    assert rc == 0
    results = json.loads((out / "offline_eval.json").read_text())
    assert list(results) == ["toy"]
    assert list(results["toy"]) == list(METHODS)
    for method, r in results["toy"].items():
        for key in ("HR@10", "HR@50", "HR@100", "NDCG@50", "train_seconds", "params"):
            assert key in r, (method, key)
        assert 0.0 <= r["HR@10"] <= r["HR@50"] <= r["HR@100"] <= 1.0
        assert "HR@50_std" in r and r["HR@50_std"] >= 0
    assert results["toy"]["mostpop"]["params"] == 0
    assert results["toy"]["mind_k"]["params"] > 0 and results["toy"]["mind_k"]["seeds"] == 2
    # MostPop by hand, from the CSV (second implementation of the protocol): on 30 items HR@50 is 1 whatever the
    # scorer, HR@10 is not
    for n in (10, 50):
        assert results["toy"]["mostpop"][f"HR@{n}"] == pytest.approx(mostpop_by_hand(data_dir / "clicks.csv", n))
    assert results["toy"]["mostpop"]["HR@10"] < 1.0
    md = (out / "offline_eval.md").read_text()
    assert "mindstream eval" in md and "machine:" in md and "| mind_k |" in md
    assert '"lr": 0.003' in md  # the --lr the towers were trained with is the one the report states
    assert (out / "offline_eval.png").stat().st_size > 0


def test_overrides_are_typed_and_checked():
    assert parse_overrides(["K=8", "p=inf", "dynamic_k=false", "hidden=32,16", "sampler=full"]) == {
        "K": 8, "p": float("inf"), "dynamic_k": False, "hidden": (32, 16), "sampler": "full"}
    with pytest.raises(ValueError, match="MINDConfig field"):
        parse_overrides(["nonsense=1"])


def test_unknown_method_is_refused(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path), "--methods", "mind_k,bogus", "--out", str(tmp_path)]) == 2
    assert "bogus" in capsys.readouterr().err
