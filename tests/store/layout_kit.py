"""Helpers for the layout upgrade tests: the store's tables without an EventStore, raw reads."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from contextlib import contextmanager

import lmdb

from store import Codec
from store._env import open_environment
from store._store import _DUP_TABLES, _TABLES
from store._txns import Transactions
from store._upgrade import UpgradeReport, upgrade_layout


@contextmanager
def bare_tables(path: pathlib.Path) -> Iterator[Transactions]:
    """The store's tables without an EventStore (which would upgrade them at open)."""
    env, _ = open_environment(path, sync=False, map_size=2**22, max_readers=8)
    try:
        yield Transactions(path, env, _TABLES, dup_tables=_DUP_TABLES)
    finally:
        env.close()


def upgrade_some(path: pathlib.Path, codec: Codec, entries: int, batches: int) -> UpgradeReport:
    """Run at most ``batches`` upgrade transactions of ``entries`` each, as an interrupted open."""
    with bare_tables(path) as tables:
        report = upgrade_layout(
            tables, tables._dbs, codec, batch_entries=entries, max_batches=batches
        )
    assert report is not None
    return report


def table(path: pathlib.Path, name: str) -> dict[bytes, bytes]:
    """Every row of the plain table ``name``."""
    env = lmdb.open(str(path), max_dbs=16, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return dict(txn.cursor(db=env.open_db(name.encode(), txn=txn, create=False)))
    finally:
        env.close()


def index_entries(path: pathlib.Path) -> list[tuple[bytes, bytes]]:
    """Every (stream key, entry) pair of the packed stream index."""
    env = lmdb.open(str(path), max_dbs=16, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            db = env.open_db(b"index", txn=txn, create=False, dupsort=True, dupfixed=True)
            return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
    finally:
        env.close()
