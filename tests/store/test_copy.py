"""Compaction and backup of data directories (real LMDB files; the engine for realistic data)."""

from __future__ import annotations

import pathlib

import lmdb
import pytest
from engine_kit import create
from waiting import wait_until

from actors import Engine, LogLocked, MaintenanceFailed, RecentCommands
from store import backup, compact

Dump = dict[bytes, dict[bytes, bytes]]


def dump(directory: pathlib.Path) -> Dump:
    """Return every named database of the environment in ``directory``, key by key."""
    env = lmdb.open(str(directory), readonly=True, lock=False, max_dbs=256, subdir=True)
    try:
        with env.begin() as txn:
            names = [name for name, _ in txn.cursor().iternext()]
            tables: Dump = {}
            for name in names:
                db = env.open_db(name, txn=txn, create=False)
                tables[name] = dict(txn.cursor(db=db).iternext())
            return tables
    finally:
        env.close()


def data_size(directory: pathlib.Path) -> int:
    return (directory / "data.mdb").stat().st_size + (
        directory / "views" / "data.mdb"
    ).stat().st_size


@pytest.fixture
def grown(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory whose idempotency table grew to 3,000 rows, then was pruned to none."""
    path = tmp_path / "data"
    with Engine.open(
        path, durability="async", idempotency_window=RecentCommands(0), idle_timeout=None
    ) as engine:
        futures = [engine.submit(create(f"o{index}")) for index in range(3000)]
        for future in futures:
            future.get(timeout=30)
        wait_until(lambda: engine.status().idempotency_entries == 0, timeout=30)
        engine.wait_for_views(timeout=30)
    return path


def test_compact_shrinks_a_directory_and_keeps_every_record(grown: pathlib.Path) -> None:
    log_before, views_before = dump(grown), dump(grown / "views")
    size = data_size(grown)
    report = compact(grown)
    assert report.after < report.before == size
    assert data_size(grown) == report.after
    assert dump(grown) == log_before
    assert dump(grown / "views") == views_before
    assert not (grown / ".compact-tmp").exists()
    with Engine.open(grown, durability="async") as engine:
        assert engine.status().head == 3000
        assert engine.execute(create("after")).position == 3001


def test_compact_refuses_a_directory_a_live_engine_holds(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data"
    with Engine.open(path, durability="async", views=[]) as engine:
        engine.execute(create("o1"))
        before = (path / "data.mdb").read_bytes()
        with pytest.raises(LogLocked) as caught:
            compact(path)
        assert "in use by process" in str(caught.value)
        assert (path / "data.mdb").read_bytes() == before


def test_compact_and_backup_refuse_a_directory_without_data(tmp_path: pathlib.Path) -> None:
    with pytest.raises(MaintenanceFailed, match="no data directory"):
        compact(tmp_path)
    with pytest.raises(MaintenanceFailed, match="no data directory"):
        backup(tmp_path, tmp_path / "copy")


def test_a_backup_never_overwrites_a_directory(tmp_path: pathlib.Path) -> None:
    path, dest = tmp_path / "data", tmp_path / "copy"
    (dest / "keep").mkdir(parents=True)
    with Engine.open(path, durability="async", views=[]) as engine:
        engine.execute(create("o1"))
        with pytest.raises(MaintenanceFailed, match="not an empty directory"):
            engine.backup(dest)
        # From this process the engine's own environments must be used, not a second open.
        with pytest.raises(MaintenanceFailed, match=r"engine\.backup"):
            backup(path, tmp_path / "other")
    assert (dest / "keep").is_dir()
    assert not (tmp_path / ".copy.partial").exists()


def test_a_cold_backup_opens_with_identical_contents(grown: pathlib.Path) -> None:
    dest = grown.parent / "backup"
    report = backup(grown, dest)
    assert report.dest == str(dest)
    assert report.snapshots >= 1  # the memory views' snapshot files, taken at close
    assert dump(dest) == dump(grown)
    assert dump(dest / "views") == dump(grown / "views")
    with Engine.open(dest, durability="async") as engine:
        assert engine.status().head == 3000
        assert engine.status().views_recovered == ""
