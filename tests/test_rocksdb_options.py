"""The RocksDB memory bounds of the tables (stream/config.py RocksDBSettings): read from the environment, and
actually applied to the databases Faust opens (RocksDB records the options it runs with in an OPTIONS file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream.config import MIB, ROCKSDB_ENV_NAMES, RocksDBSettings
from stream.worker.app import table_options


def test_defaults_are_bounded_and_documented() -> None:
    s = RocksDBSettings()
    assert table_options() == {"write_buffer_size": 2 * MIB, "max_write_buffer_number": 2,
                               "block_cache_size": 8 * MIB}
    # Faust's defaults are 64 MiB x 3 write buffers and a 2 GiB block cache per database
    assert s.bound_mib() == 12


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROCKSDB_ENV_NAMES["write_buffer_mib"], "4")
    monkeypatch.setenv(ROCKSDB_ENV_NAMES["max_write_buffers"], "3")
    monkeypatch.setenv(ROCKSDB_ENV_NAMES["block_cache_mib"], "16")
    assert table_options() == {"write_buffer_size": 4 * MIB, "max_write_buffer_number": 3,
                               "block_cache_size": 16 * MIB}
    monkeypatch.setenv(ROCKSDB_ENV_NAMES["max_write_buffers"], "0")
    with pytest.raises(ValueError, match=">= 1"):
        table_options()


def test_table_options_reach_the_database_faust_opens(tmp_path: Path) -> None:
    """Through Faust's own option object and rocksdict, as a table partition's database is opened."""
    from faust.stores.rocksdb import RocksDBOptions

    db = RocksDBOptions(**table_options(), use_rocksdict=True).open(tmp_path / "db")
    try:
        db[b"k"] = b"v"
        assert db[b"k"] == b"v"
        assert db.property_int_value("rocksdb.block-cache-capacity") == 8 * MIB
    finally:
        db.close()
    options_files = sorted(tmp_path.joinpath("db").glob("OPTIONS-*"))
    assert options_files, "RocksDB wrote no OPTIONS file"
    text = options_files[-1].read_text()
    assert re.search(r"^\s*write_buffer_size=(\d+)$", text, re.M).group(1) == str(2 * MIB)
    assert re.search(r"^\s*max_write_buffer_number=(\d+)$", text, re.M).group(1) == "2"
    # and Faust's defaults, for contrast: what the tables ran with before
    db = RocksDBOptions(use_rocksdict=True).open(tmp_path / "default")
    try:
        assert db.property_int_value("rocksdb.block-cache-capacity") == 2 * 1024 * MIB
    finally:
        db.close()
