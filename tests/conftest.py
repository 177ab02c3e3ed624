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
