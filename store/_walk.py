"""A resumable walk over a table: the next rows after a key, a bounded batch at a time.

The layout upgrades (:mod:`store._index_upgrade`, :mod:`store._command_keys`) move rows in
write transactions of a bounded size, and record the last key done in the same commit, so an
interrupted upgrade continues where it stopped and never moves a row twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store._env import Database, Txn

__all__ = ["rows_after"]


def rows_after(
    txn: Txn, db: Database, after: bytes | None, budget: int, start: bytes = b""
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Return up to ``budget`` rows of ``db`` in key order, and whether more follow.

    Args:
        txn: The transaction to read in.
        db: The table.
        after: The last key done (excluded), or None to begin.
        budget: Most rows returned (>= 1).
        start: Where to begin when ``after`` is None (the first key at or above it).
    """
    cursor = txn.cursor(db=db)
    found = cursor.set_range(after if after is not None else start)
    if found and after is not None and cursor.key() == after:
        found = cursor.next()
    rows: list[tuple[bytes, bytes]] = []
    while found and len(rows) < budget:
        rows.append((bytes(cursor.key()), bytes(cursor.value())))
        found = cursor.next()
    return rows, found
