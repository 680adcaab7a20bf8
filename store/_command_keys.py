"""Layout 3 -> 4: command ids that are uuids keyed by their 16 bytes, not their 36-char text.

Up to layout 3 the idempotency table (``commands``) was keyed by the command id's UTF-8. Layout 4
keys a canonical lowercase uuid as ``0x00`` + its 16 bytes (:func:`store._commands.command_key`):
~25 B less per command on disk, with the same byte order. Every other id keeps its UTF-8 key.

:func:`pack_command_keys_step` re-keys at most ``budget`` rows per write transaction and records
the last text key it examined in ``meta`` (key ``commands_after``) in the same commit, so a crash
between two transactions leaves a consistent state that the next open continues. Text keys start
at ``0x01`` or above and packed ones with ``0x00``: a re-keyed row sorts before every text key,
so the walk never meets it again. A key of an older directory that starts with NUL (ids with NUL
were accepted then) is left as it is; the store now refuses such ids, so nothing looks it up.
The last transaction removes the progress key (the caller then sets the layout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from store._commands import command_key
from store._walk import rows_after

if TYPE_CHECKING:
    from store._env import Database, Txn

__all__ = ["COMMANDS_PROGRESS_KEY", "pack_command_keys_step"]

COMMANDS_PROGRESS_KEY: Final = b"commands_after"
"""The ``meta`` key of the last text key examined while the re-keying is under way."""
_FIRST_TEXT_KEY: Final = b"\x01"


def pack_command_keys_step(txn: Txn, dbs: dict[str, Database], budget: int) -> tuple[int, bool]:
    """Re-key at most ``budget`` rows of the idempotency table inside ``txn``.

    Args:
        txn: A write transaction.
        dbs: The store's tables (``commands``, ``meta``).
        budget: Most rows examined (>= 1).

    Returns:
        How many rows it re-keyed, and whether every row is done.
    """
    meta, commands = dbs["meta"], dbs["commands"]
    after = txn.get(COMMANDS_PROGRESS_KEY, db=meta)
    rows, found = rows_after(txn, commands, after, budget, start=_FIRST_TEXT_KEY)
    moved = 0
    for key, value in rows:
        packed = command_key(key.decode())  # keys were checked UTF-8 when written
        if packed != key:
            txn.delete(key, db=commands)
            txn.put(packed, value, db=commands)
            moved += 1
    if found:
        txn.put(COMMANDS_PROGRESS_KEY, rows[-1][0], db=meta)
        return moved, False
    txn.delete(COMMANDS_PROGRESS_KEY, db=meta)
    return moved, True
