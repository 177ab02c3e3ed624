"""Datasets, the vocabulary and the leave-one-out split of docs/evaluation.md.

Three input formats are detected from the path:

* Amazon sequence files: one user a line, `user_id item_id item_id ...` in time order.
* MovieLens atomic files: a directory (or its `.inter` file) with `NAME.inter`, optional
  `NAME.item` and `NAME.user`, tab-separated with a typed header (`field:type`).
  Genres (`class`/`genre` column) become item categories; age (bucketed), gender and
  occupation become the user profile.
* Click logs as CSV (header required) or JSON Lines with `user_id`, `item_id`, `ts` and optional
  `category`, `event_id` and `profile` — the shape of the Kafka `clicks` topic, so a user can
  train on their own exported events. Each user's clicks are sorted by `ts` (stable, so equal
  timestamps keep file order); repeated `event_id`s are dropped as at-least-once duplicates.

Every id is an external string. Malformed input raises `DataError("file:line: what is wrong")`.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# A user needs a training item, a validation target and a test target.
MIN_USER_INTERACTIONS = 3

CLICK_FIELDS = ("user_id", "item_id", "ts")
# CSV columns named `profile.<field>` carry the user profile (JSONL uses a `profile` object).
CSV_PROFILE_PREFIX = "profile."

# MovieLens-1M's age groups: the raw age is too fine-grained to learn an embedding per value.
AGE_BUCKETS = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"))


class DataError(ValueError):
    """Input that cannot be used; the message is `file:line: what is wrong` where a line is at fault."""


@dataclass
class Interactions:
    """Users' behavior sequences plus side information, all keyed by external string ids."""

    sequences: dict[str, list[str]]
    item_categories: dict[str, list[str]] = field(default_factory=dict)
    user_profile: dict[str, dict[str, str]] = field(default_factory=dict)
    name: str = "dataset"

    @property
    def n_interactions(self) -> int:
        return sum(len(s) for s in self.sequences.values())

    def summary(self) -> dict:
        items = {i for s in self.sequences.values() for i in s}
        return {
            "name": self.name,
            "users": len(self.sequences),
            "items": len(items),
            "interactions": self.n_interactions,
        }


@dataclass
class Vocab:
    """Index maps. Item index 0 is padding and `item_ids[i]` has index `i + 1`;
    categories and profile values likewise reserve 0 for none/unknown."""

    item_ids: list[str]
    categories: list[str]
    item_category_lists: list[list[int]]  # per item index (0 = padding: []), category indices
    profile_fields: dict[str, dict[str, int]]  # field -> value -> index (1-based)

    def __post_init__(self) -> None:
        self.item_index: dict[str, int] = {item: i + 1 for i, item in enumerate(self.item_ids)}

    @classmethod
    def build(cls, interactions: Interactions) -> Vocab:
        # Items in first-seen order (users in file order): deterministic for a given input.
        seen: dict[str, None] = {}
        for seq in interactions.sequences.values():
            for item in seq:
                seen.setdefault(item, None)
        item_ids = list(seen)
        categories = sorted({c for item in item_ids for c in interactions.item_categories.get(item, [])})
        cat_index = {c: i + 1 for i, c in enumerate(categories)}
        item_category_lists = [[]] + [
            [cat_index[c] for c in interactions.item_categories.get(item, [])] for item in item_ids
        ]
        fields: dict[str, set[str]] = {}
        for profile in interactions.user_profile.values():
            for key, value in profile.items():
                fields.setdefault(key, set()).add(value)
        profile_fields = {
            key: {v: i + 1 for i, v in enumerate(sorted(values))} for key, values in sorted(fields.items())
        }
        return cls(item_ids, categories, item_category_lists, profile_fields)

    @property
    def n_items(self) -> int:
        """Number of real items (embedding tables need `n_items + 1` rows for padding)."""
        return len(self.item_ids)

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def encode_items(self, items: list[str]) -> list[int]:
        """Tower indices of known items; unknown items are skipped (see ARCHITECTURE.md)."""
        index = self.item_index
        return [index[i] for i in items if i in index]

    def item_category_matrix(self) -> np.ndarray:
        """[n_items + 1, C] int64 category indices per item, right-padded with 0 (C >= 1)."""
        width = max(1, max((len(c) for c in self.item_category_lists), default=1))
        out = np.zeros((len(self.item_category_lists), width), dtype=np.int64)
        for i, cats in enumerate(self.item_category_lists):
            out[i, : len(cats)] = cats
        return out

    def profile_sizes(self) -> list[int]:
        """Vocabulary size per profile field, in `profile_fields` order, counting index 0."""
        return [len(values) + 1 for values in self.profile_fields.values()]

    def encode_profile(self, profile: dict[str, str] | None) -> list[int]:
        profile = profile or {}
        return [values.get(profile.get(key, ""), 0) for key, values in self.profile_fields.items()]


@dataclass
class Split:
    """Leave-one-out split. Histories are int64 arrays LEFT-padded with 0: the most recent item is
    in the last column, so truncating to `max_len` keeps the right end.

    `*_exclude` hold each evaluated user's whole history (not truncated, left-padded) — the items
    removed from the ranking under the protocol. Rows of valid/test arrays follow `users`.
    """

    vocab: Vocab
    max_len: int
    train_items: np.ndarray  # [S, max_len]
    train_profile: np.ndarray  # [S, F]
    train_target: np.ndarray  # [S]
    users: list[str]  # evaluated users (>= MIN_USER_INTERACTIONS interactions)
    valid_items: np.ndarray  # [U, max_len]
    valid_target: np.ndarray  # [U]
    valid_exclude: np.ndarray  # [U, Lv]
    test_items: np.ndarray  # [U, max_len]
    test_target: np.ndarray  # [U]
    test_exclude: np.ndarray  # [U, Lt]
    profile: np.ndarray  # [U, F] profile of each evaluated user
    train_sequences: list[list[int]]  # every user's training part as indices (for CF baselines)

    @property
    def n_items(self) -> int:
        return self.vocab.n_items


def _left_pad(rows: list[list[int]], width: int | None = None) -> np.ndarray:
    width = max(1, max((len(r) for r in rows), default=1)) if width is None else width
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        r = r[-width:]
        if r:
            out[i, width - len(r) :] = r
    return out


def leave_one_out(interactions: Interactions, vocab: Vocab, max_len: int) -> Split:
    """Split per docs/evaluation.md: per user (time order) the last item is the test target,
    the second-to-last the validation target, the rest is training data. Training samples are every
    prefix of the training part (history = the most recent `max_len` items before t, target = item t).
    Users with fewer than 3 interactions are not evaluated; all their items train."""
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    train_hist: list[list[int]] = []
    train_target: list[int] = []
    train_prof: list[list[int]] = []
    users: list[str] = []
    valid_hist, valid_target, test_hist, test_target, profiles = [], [], [], [], []
    train_sequences: list[list[int]] = []
    for user, seq in interactions.sequences.items():
        idx = vocab.encode_items(seq)
        evaluated = len(idx) >= MIN_USER_INTERACTIONS
        train_part = idx[:-2] if evaluated else idx
        prof = vocab.encode_profile(interactions.user_profile.get(user))
        train_sequences.append(train_part)
        for t in range(1, len(train_part)):
            train_hist.append(train_part[max(0, t - max_len) : t])
            train_target.append(train_part[t])
            train_prof.append(prof)
        if evaluated:
            users.append(user)
            valid_hist.append(train_part)
            valid_target.append(idx[-2])
            test_hist.append(idx[:-1])
            test_target.append(idx[-1])
            profiles.append(prof)
    if not users:
        raise DataError(
            f"{interactions.name}: no user has >= {MIN_USER_INTERACTIONS} interactions; "
            "leave-one-out needs a training item, a validation and a test target per user"
        )
    if not train_target:
        raise DataError(f"{interactions.name}: no training samples (every user has too few interactions)")
    n_fields = len(vocab.profile_fields)

    def prof_array(rows: list[list[int]]) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), n_fields)

    return Split(
        vocab=vocab,
        max_len=max_len,
        train_items=_left_pad(train_hist, max_len),
        train_profile=prof_array(train_prof),
        train_target=np.asarray(train_target, dtype=np.int64),
        users=users,
        valid_items=_left_pad(valid_hist, max_len),
        valid_target=np.asarray(valid_target, dtype=np.int64),
        valid_exclude=_left_pad(valid_hist),
        test_items=_left_pad(test_hist, max_len),
        test_target=np.asarray(test_target, dtype=np.int64),
        test_exclude=_left_pad(test_hist),
        profile=prof_array(profiles),
        train_sequences=train_sequences,
    )


# --------------------------------------------------------------------------- loading


def load_dataset(path: str | Path) -> Interactions:
    """Load any supported format (see the module docstring), detected from the path and content."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        inter = sorted(path.glob("*.inter"))
        if len(inter) != 1:
            raise DataError(f"{path}: expected one *.inter file (MovieLens atomic files), found {len(inter)}")
        data = _load_atomic(inter[0])
    else:
        data = _load_file(path)
    _check_not_empty(data, path)
    return data


def _dataset_name(path: Path) -> str:
    return path.name if path.is_dir() else (path.parent.name or path.stem)


def _load_file(path: Path) -> Interactions:
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return _load_atomic(path)
    if suffix == ".csv":
        return _load_clicks_csv(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _load_clicks_jsonl(path)
    first = ""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                first = line.strip()
                break
    if first.startswith("{"):
        return _load_clicks_jsonl(path)
    if "," in first:
        return _load_clicks_csv(path)
    return _load_sequences(path)


def _check_not_empty(data: Interactions, path: Path) -> None:
    if not data.sequences:
        raise DataError(f"{path}: empty dataset (no interactions)")
    if max(len(s) for s in data.sequences.values()) < MIN_USER_INTERACTIONS:
        raise DataError(
            f"{path}: too small: no user has >= {MIN_USER_INTERACTIONS} interactions "
            f"({len(data.sequences)} users, {data.n_interactions} interactions)"
        )


def _load_sequences(path: Path) -> Interactions:
    sequences: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue  # blank lines carry nothing
            if len(tokens) < 2:
                raise DataError(f"{path}:{n}: expected `user_id item_id [item_id ...]`, got only {tokens[0]!r}")
            if tokens[0] in sequences:
                raise DataError(f"{path}:{n}: user {tokens[0]!r} appears on more than one line")
            sequences[tokens[0]] = tokens[1:]
    return Interactions(sequences, name=_dataset_name(path))


def _ordered(clicks: dict[str, list[tuple[float, int, str]]]) -> dict[str, list[str]]:
    # Sort by (ts, arrival order): stable for equal timestamps.
    return {user: [item for _, _, item in sorted(events)] for user, events in clicks.items()}


class _ClickCollector:
    """Accumulates click rows from either click-log format with the same validation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clicks: dict[str, list[tuple[float, int, str]]] = {}
        self.categories: dict[str, list[str]] = {}
        self.profiles: dict[str, dict[str, str]] = {}
        self.event_ids: set[str] = set()
        self.rows = 0

    def add(self, n: int, row: dict) -> None:
        where = f"{self.path}:{n}"
        for key in CLICK_FIELDS:
            value = row.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(f"{where}: missing `{key}`")
        user, item = str(row["user_id"]).strip(), str(row["item_id"]).strip()
        try:
            ts = float(row["ts"])
        except (TypeError, ValueError):
            raise DataError(f"{where}: `ts` is not a number: {row['ts']!r}") from None
        if not math.isfinite(ts):
            raise DataError(f"{where}: `ts` is not finite: {row['ts']!r}")
        event_id = row.get("event_id")
        if event_id not in (None, ""):
            if str(event_id) in self.event_ids:
                return  # at-least-once delivery: the same event exported twice
            self.event_ids.add(str(event_id))
        self.rows += 1
        self.clicks.setdefault(user, []).append((ts, self.rows, item))
        category = row.get("category")
        if category not in (None, ""):
            cats = self.categories.setdefault(item, [])
            if str(category) not in cats:
                cats.append(str(category))
        profile = row.get("profile")
        if profile is not None:
            if not isinstance(profile, dict) or not all(isinstance(v, str) for v in profile.values()):
                raise DataError(f"{where}: `profile` must be an object of strings")
            if profile:
                self.profiles.setdefault(user, {}).update(profile)

    def result(self) -> Interactions:
        return Interactions(_ordered(self.clicks), self.categories, self.profiles, _dataset_name(self.path))


def _load_clicks_csv(path: Path) -> Interactions:
    out = _ClickCollector(path)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return out.result()
        header = [h.strip() for h in header]
        missing = [k for k in CLICK_FIELDS if k not in header]
        if missing:
            raise DataError(f"{path}:1: header lacks {', '.join(missing)} (need user_id,item_id,ts[,category])")
        for row in reader:
            n = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{n}: expected {len(header)} fields, got {len(row)}")
            record: dict = dict(zip(header, (c.strip() for c in row), strict=True))
            prof = {
                k[len(CSV_PROFILE_PREFIX) :]: v for k, v in record.items() if k.startswith(CSV_PROFILE_PREFIX) and v
            }
            if prof:
                record["profile"] = prof
            out.add(n, record)
    return out.result()


def iter_json_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; DataError `file:line: ...` otherwise."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
            yield n, record


def _load_clicks_jsonl(path: Path) -> Interactions:
    out = _ClickCollector(path)
    for n, record in iter_json_objects(path):
        out.add(n, record)
    return out.result()


def _read_atomic(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Rows of a typed tab-separated atomic file: (column names without types, [(line, fields)])."""
    with path.open(encoding="utf-8") as f:
        header_line = f.readline()
        if not header_line.strip():
            raise DataError(f"{path}:1: empty file (expected a typed header such as `user_id:token`)")
        names = []
        for col in header_line.rstrip("\n").split("\t"):
            name, sep, _type = col.partition(":")
            if not sep:
                raise DataError(f"{path}:1: header column {col!r} has no `:type`")
            names.append(name.strip())
        missing = [r for r in required if r not in names]
        if missing:
            raise DataError(f"{path}:1: header lacks {', '.join(missing)}")
        rows = []
        for n, line in enumerate(f, 2):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != len(names):
                raise DataError(f"{path}:{n}: expected {len(names)} tab-separated fields, got {len(fields)}")
            rows.append((n, fields))
    return names, rows


def _age_bucket(age: str) -> str:
    value = int(age)
    for upper, label in AGE_BUCKETS:
        if value < upper:
            return label
    return "56+"


def _load_atomic(inter_path: Path) -> Interactions:
    stem, folder = inter_path.stem, inter_path.parent
    names, rows = _read_atomic(inter_path, ("user_id", "item_id", "timestamp"))
    u, i, t = names.index("user_id"), names.index("item_id"), names.index("timestamp")
    clicks: dict[str, list[tuple[float, int, str]]] = {}
    for order, (n, fields) in enumerate(rows):
        try:
            ts = float(fields[t])
        except ValueError:
            raise DataError(f"{inter_path}:{n}: timestamp is not a number: {fields[t]!r}") from None
        if not fields[u].strip() or not fields[i].strip():
            raise DataError(f"{inter_path}:{n}: empty user_id or item_id")
        clicks.setdefault(fields[u].strip(), []).append((ts, order, fields[i].strip()))

    categories: dict[str, list[str]] = {}
    item_path = folder / f"{stem}.item"
    if item_path.exists():
        names, rows = _read_atomic(item_path, ("item_id",))
        genre_col = next((names.index(c) for c in ("class", "genre", "genres", "category") if c in names), None)
        if genre_col is not None:
            for _n, fields in rows:
                genres = fields[genre_col].split()
                if genres:
                    categories[fields[names.index("item_id")].strip()] = genres

    profiles: dict[str, dict[str, str]] = {}
    user_path = folder / f"{stem}.user"
    if user_path.exists():
        names, rows = _read_atomic(user_path, ("user_id",))
        for n, fields in rows:
            prof = {}
            for col in ("age", "gender", "occupation"):
                if col in names and fields[names.index(col)].strip():
                    value = fields[names.index(col)].strip()
                    if col == "age":
                        try:
                            value = _age_bucket(value)
                        except ValueError:
                            raise DataError(f"{user_path}:{n}: age is not an integer: {value!r}") from None
                    prof[col] = value
            profiles[fields[names.index("user_id")].strip()] = prof
    return Interactions(_ordered(clicks), categories, profiles, name=folder.name if folder.name else stem)


def item_popularity(split: Split) -> np.ndarray:
    """[n_items + 1] counts of each item in the training parts (index 0 = padding = 0)."""
    counts = Counter(i for seq in split.train_sequences for i in seq)
    out = np.zeros(split.n_items + 1, dtype=np.int64)
    for item, c in counts.items():
        out[item] = c
    return out
