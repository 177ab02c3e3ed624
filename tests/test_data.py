"""model/data.py: the three input formats, their errors, the vocabulary and the leave-one-out split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.data import DataError, Interactions, Vocab, leave_one_out, load_dataset


def test_amazon_beauty_loads_and_splits(shared_data):
    data = load_dataset(shared_data / "amazon-beauty" / "Beauty.txt")
    assert data.summary() == {"name": "amazon-beauty", "users": 22363, "items": 12101, "interactions": 198502}
    vocab = Vocab.build(data)
    split = leave_one_out(data, vocab, max_len=50)
    # every prefix of each training part: sum over users of (len - 2 - 1)
    assert len(split.train_target) == 198502 - 3 * 22363
    assert len(split.users) == 22363 and split.profile.shape == (22363, 0)
    row = split.users.index("1")  # line 1: `1 1 2 3 4 5`
    ix = vocab.item_index
    assert split.test_target[row] == ix["5"] and split.valid_target[row] == ix["4"]
    assert list(split.test_items[row, -4:]) == [ix["1"], ix["2"], ix["3"], ix["4"]]
    assert split.test_items[row, 0] == 0  # left padding
    assert list(split.valid_items[row, -3:]) == [ix["1"], ix["2"], ix["3"]] and split.valid_items[row, -4] == 0
    # histories for exclusion are the untruncated ones
    assert split.test_exclude.shape[1] == 203 and split.test_items.shape[1] == 50


def test_movielens_atomic_files(shared_data):
    data = load_dataset(shared_data / "ml-100k")
    assert data.summary() == {"name": "ml-100k", "users": 943, "items": 1682, "interactions": 100000}
    assert data.item_categories["1"] == ["Animation", "Children's", "Comedy"]  # Toy Story: several genres
    assert data.user_profile["1"] == {"age": "18-24", "gender": "M", "occupation": "technician"}
    assert data.user_profile["2"]["age"] == "50-55"
    vocab = Vocab.build(data)
    assert list(vocab.profile_fields) == ["age", "gender", "occupation"]
    cats = vocab.item_category_matrix()
    toy = vocab.item_index["1"]
    assert sorted(vocab.categories[c - 1] for c in cats[toy] if c) == ["Animation", "Children's", "Comedy"]
    assert cats[0].sum() == 0 and vocab.n_categories == 19
    split = leave_one_out(data, vocab, max_len=20)
    assert split.profile.shape == (943, 3) and (split.profile > 0).all()
    assert split.train_items.shape[1] == 20


def _write(path, text):
    path.write_text(text)
    return path


def test_click_csv_sorted_by_ts_with_dedup_category_and_profile(tmp_path):
    p = _write(
        tmp_path / "clicks.csv",
        "user_id,item_id,ts,category,event_id,profile.country\n"
        "u1,b,2.0,shoes,e2,de\n"
        "u1,a,1.0,hats,e1,de\n"
        "u1,b,2.0,shoes,e2,de\n"  # the same event delivered twice
        "u1,c,3.5,,e3,de\n"
        "u2,a,1,,,\n",
    )
    data = load_dataset(p)
    assert data.sequences == {"u1": ["a", "b", "c"], "u2": ["a"]}
    assert data.item_categories == {"b": ["shoes"], "a": ["hats"]}
    assert data.user_profile == {"u1": {"country": "de"}}


def test_click_jsonl_matches_the_clicks_topic(tmp_path):
    rows = [
        {"user_id": "u1", "item_id": "x", "ts": 5, "profile": {"gender": "F"}},
        {"user_id": "u1", "item_id": "y", "ts": 4, "category": "c1"},
        {"user_id": "u1", "item_id": "z", "ts": 4},  # equal ts keeps file order
        {"user_id": "u1", "item_id": "w", "ts": 9.5},
    ]
    data = load_dataset(_write(tmp_path / "events.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n"))
    assert data.sequences == {"u1": ["y", "z", "x", "w"]}
    assert data.user_profile == {"u1": {"gender": "F"}}
    split = leave_one_out(data, Vocab.build(data), max_len=5)
    assert split.profile.tolist() == [[1]]


@pytest.mark.parametrize(
    ("name", "text", "where", "what"),
    [
        ("c.csv", "user_id,item_id,ts\nu,a,1\nu,b\n", ":3:", "expected 3 fields"),
        ("c.csv", "user_id,item_id,ts\nu,a,1\nu,b,yesterday\n", ":3:", "not a number"),
        ("c.csv", "user,item,ts\nu,a,1\n", ":1:", "header lacks"),
        ("c.jsonl", '{"user_id":"u","item_id":"a","ts":1}\n{"user_id":"u","item_id":\n', ":2:", "invalid JSON"),
        ("c.jsonl", '{"user_id":"u","ts":1}\n', ":1:", "missing `item_id`"),
        ("c.jsonl", '[1, 2]\n', ":1:", "JSON object"),
        ("seq.txt", "1 2 3 4\n2\n", ":2:", "user_id item_id"),
        ("seq.txt", "1 2 3 4\n1 5 6\n", ":2:", "more than one line"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, name, text, where, what):
    p = _write(tmp_path / name, text)
    with pytest.raises(DataError) as err:
        load_dataset(p)
    assert str(err.value).startswith(f"{p}{where}") and what in str(err.value)


def test_malformed_atomic_file(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    _write(d / "ml.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5\n1\t3\tsoon\n")
    with pytest.raises(DataError, match=r"ml\.inter:3: timestamp is not a number"):
        load_dataset(d)
    _write(d / "ml.inter", "user_id\titem_id\ttimestamp\n")
    with pytest.raises(DataError, match=r"ml\.inter:1: header column"):
        load_dataset(d)


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "Empty.txt"])
def test_empty_dataset(tmp_path, name):
    with pytest.raises(DataError, match="empty dataset"):
        load_dataset(_write(tmp_path / name, ""))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("small.csv", "user_id,item_id,ts\nu1,a,1\nu1,b,2\nu2,a,1\n"),
        ("small.jsonl", '{"user_id":"u1","item_id":"a","ts":1}\n{"user_id":"u1","item_id":"b","ts":2}\n'),
        ("small.txt", "1 2 3\n2 3 4\n"),
    ],
)
def test_too_small_dataset(tmp_path, name, text):
    with pytest.raises(DataError, match="too small: no user has >= 3 interactions"):
        load_dataset(_write(tmp_path / name, text))


def test_split_prefixes_truncation_and_short_users():
    data = Interactions({"a": ["1", "2", "3", "4", "5", "6"], "b": ["2", "7"]}, name="toy")
    vocab = Vocab.build(data)
    assert vocab.item_ids == ["1", "2", "3", "4", "5", "6", "7"] and vocab.item_index["1"] == 1
    split = leave_one_out(data, vocab, max_len=2)
    i = vocab.item_index
    # user a trains on 1 2 3 4 (prefixes of length 1..3, truncated to 2); b (2 items) trains on 2 -> 7
    assert split.train_items.tolist() == [[0, i["1"]], [i["1"], i["2"]], [i["2"], i["3"]], [0, i["2"]]]
    assert split.train_target.tolist() == [i["2"], i["3"], i["4"], i["7"]]
    assert split.users == ["a"]
    assert split.valid_target.tolist() == [i["5"]] and split.test_target.tolist() == [i["6"]]
    assert split.test_items.tolist() == [[i["4"], i["5"]]]
    assert split.test_exclude.tolist() == [[i["1"], i["2"], i["3"], i["4"], i["5"]]]
    assert split.train_items.dtype == np.int64 and split.test_exclude.dtype == np.int64


def test_no_evaluable_user_is_an_error():
    data = Interactions({"a": ["1", "2"]}, name="toy")
    with pytest.raises(DataError, match=">= 3 interactions"):
        leave_one_out(data, Vocab.build(data), max_len=5)
