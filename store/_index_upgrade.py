"""Layout 2 -> 3: the stream index packed, one LMDB key per stream instead of one per event.

Layout 2 kept the stream index in ``streams``: one row per event, keyed ``stream key + NUL +
8-byte version``, valued with the 8-byte log key. With many streams written in turn, each row
lands on a random page and LMDB pages end half empty: ~118 B per event on disk for 59 B of data
(measured on a 200k-event directory of 10k orders). Layout 3 keeps it in ``index``, an LMDB
``DUPSORT | DUPFIXED`` table: the stream key once, then one 12-byte duplicate per event
(``4-byte version + 8-byte log key``, see :func:`store._log.index_entry`), packed: ~12 B per
event on the same directory.

:func:`pack_index_step` moves at most ``budget`` rows per write transaction, in key order (so
each stream's versions arrive in order), and records the last row moved in the ``meta`` table
in the same commit (key ``index_after``): a crash between two transactions leaves a consistent
state that the next open continues, and a row is never moved twice. Once every row is moved,
``streams`` is emptied at once (``drop``: its pages go back to LMDB's free list), the layout is
set to 3 and the progress key removed, all in that last transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from store._log import index_entry
from store._walk import rows_after

if TYPE_CHECKING:
    from store._env import Database, Txn

__all__ = ["PACKED", "PACK_PROGRESS_KEY", "pack_index_step"]

PACKED: Final = 3
"""The layout whose stream index is packed (``index``)."""

_LAYOUT_KEY: Final = b"layout"
PACK_PROGRESS_KEY: Final = b"index_after"
"""The ``meta`` key of the last row moved while the packing is under way."""
_SUFFIX: Final = 9  # NUL + 8-byte version after the stream key in a layout-2 row


def pack_index_step(txn: Txn, dbs: dict[str, Database], budget: int) -> tuple[int, bool]:
    """Move at most ``budget`` stream index rows to the packed index inside ``txn``.

    Args:
        txn: A write transaction.
        dbs: The store's tables (``streams``, ``index``, ``meta``).
        budget: Most rows moved (>= 1).

    Returns:
        How many rows it moved, and whether the layout is now :data:`PACKED`.
    """
    meta = dbs["meta"]
    rows, found = rows_after(txn, dbs["streams"], txn.get(PACK_PROGRESS_KEY, db=meta), budget)
    if rows:
        entries = [
            (key[:-_SUFFIX], index_entry(int.from_bytes(key[-8:], "big"), value))
            for key, value in rows
        ]
        txn.cursor(db=dbs["index"]).putmulti(entries, dupdata=False)
    if found:
        txn.put(PACK_PROGRESS_KEY, rows[-1][0], db=meta)
        return len(rows), False
    txn.drop(dbs["streams"], delete=False)
    txn.put(_LAYOUT_KEY, PACKED.to_bytes(8, "big"), db=meta)
    txn.delete(PACK_PROGRESS_KEY, db=meta)
    return len(rows), True
