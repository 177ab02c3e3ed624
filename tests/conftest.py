"""Shared test fixtures. Real datasets are read from ../shared/data (beside the checkout, also in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"datasets expected at {SHARED_DATA} (../shared/data beside the checkout)"
    return SHARED_DATA


# A small but real MIND release on MovieLens-100K, trained through the same call `mindstream train`
# makes. Sized to train in well under a minute on 2 cores (one epoch, d=32, 20 behaviors).
ML100K_MODEL = dict(d=32, K=4, max_len=20, hidden=(64,), profile_dim=8)
ML100K_TRAIN = dict(epochs=1, batch_size=512, threads=1, progress=False)


@pytest.fixture(scope="session")
def ml100k_release(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a release (models/<version>; models/CURRENT names it) trained on ml-100k."""
    from model.mind import MINDConfig
    from model.train import TrainConfig, train_release

    root = tmp_path_factory.mktemp("models")
    return train_release(shared_data / "ml-100k", root, MINDConfig(**ML100K_MODEL), TrainConfig(**ML100K_TRAIN))


V2_PREFIX = "b:"


@pytest.fixture(scope="session")
def v2_dir(ml100k_release: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second release for hot swaps: the same MovieLens users with every item id prefixed "b:" (so its item
    set is disjoint from ml100k_release's) and d=16 instead of 32; trained after it, so its created_ts is later."""
    import json

    from model.data import load_dataset
    from model.mind import MINDConfig
    from model.train import TrainConfig, train_release

    ml = load_dataset(shared_data / "ml-100k")
    tmp = tmp_path_factory.mktemp("v2")
    data = tmp / "clicks-b.jsonl"
    with data.open("w") as f:
        for user in sorted(ml.sequences, key=int)[:300]:
            for ts, item in enumerate(ml.sequences[user]):
                f.write(json.dumps({"user_id": user, "item_id": V2_PREFIX + item, "ts": ts}) + "\n")
    return train_release(data, tmp / "models", MINDConfig(d=16, K=4, max_len=20, hidden=(32,), profile_dim=4),
                         TrainConfig(epochs=1, batch_size=512, threads=1, progress=False))


def two_version_models(root: Path, v1: Path, v2: Path) -> Path:
    """`root` made a models directory holding copies of releases v1 and v2, CURRENT = v1."""
    import shutil

    from model.release import set_current

    root.mkdir()
    for release in (v1, v2):
        shutil.copytree(release, root / release.name)
    set_current(root, v1.name)
    return root


@pytest.fixture
def models(ml100k_release: Path, v2_dir: Path, tmp_path: Path) -> Path:
    """models/ holding v1 (ml100k_release) and v2 (v2_dir), CURRENT = v1."""
    return two_version_models(tmp_path / "models", ml100k_release, v2_dir)
