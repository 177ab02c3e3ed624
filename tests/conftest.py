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
