"""Idempotency retention: how long the ``commands`` table answers for a command id.

The ``commands`` table is keyed by command id (random uuids by default), so it holds no order of
its own. The log does: each event's envelope carries the ``command_id`` that caused it and the
``timestamp`` of its command, and positions are in commit order. So pruning walks the log from a
*pruning cursor* (meta key ``idempotency_cursor``: the last position walked, 8 bytes big-endian)
and deletes, for each event, its command's row — only if that row still describes *this* event
(an id pruned earlier may have been used again since; its new row names later positions). The
cursor is written in the same transaction as the deletions, so a crash or a reopen resumes where
the last committed batch stopped, and the work is O(rows pruned), never a scan of the table.

Two kinds of window (:data:`IdempotencyWindow`):

* a duration (seconds, or a :class:`timedelta`): the walk stops at the first event
  whose timestamp is not older than ``now - window``. Timestamps of commands decided on other
  threads are only roughly in position order; stopping at the first young one means a row is
  sometimes kept a little longer, never pruned early;
* :class:`RecentCommands` ``(n)``: the walk goes on while the table holds more than ``n`` rows.

Each call does a bounded amount of work (``limit`` events walked, so at most ``limit`` rows
deleted) in one write transaction: the group commit waits at most for one small batch.

A command that appended no events has no place in the log: its row is not reached by the walk
and stays (the reference domain never has such commands).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, TypeAlias

import msgspec

from store._commands import command_key, command_span
from store._log import read_log_values

if TYPE_CHECKING:
    from store._env import Database, Txn
    from store._frames import LogFrames

__all__ = [
    "DEFAULT_IDEMPOTENCY_WINDOW",
    "IdempotencyStats",
    "IdempotencyWindow",
    "PruneResult",
    "RecentCommands",
    "cutoff_of",
    "idempotency_stats_in_txn",
    "normalize_window",
    "prune_commands_in_txn",
    "pruning_cursor_in_txn",
]


class RecentCommands(msgspec.Struct, frozen=True):
    """An idempotency window of the ``count`` most recent commands (by log position).

    Attributes:
        count: How many of the most recent commands stay answerable (>= 0).
    """

    count: int


IdempotencyWindow: TypeAlias = "float | int | timedelta | RecentCommands | None"
"""Seconds (a number or a timedelta), a :class:`RecentCommands` count, or None (keep forever)."""

DEFAULT_IDEMPOTENCY_WINDOW: Final = timedelta(days=7)
"""Seven days: longer than any automatic retry (HTTP clients, job queues and brokers give up
within hours to a few days; Kafka's default retention is 7 days, SQS's longest 14), long enough
for an operator to re-send a batch after a weekend outage, yet it bounds the table to
``command rate x 7 days`` rows instead of every command ever."""

_CURSOR_KEY: Final = b"idempotency_cursor"
_NS: Final = 1_000_000_000


class _Stamp(msgspec.Struct, array_like=True, frozen=True, gc=False):
    # The envelope's leading fields (see store._codec); the event that follows is skipped.
    position: int
    stream_id: str
    stream_type: str
    version: int
    tag: str
    schema_version: int
    timestamp: int
    command_id: str


_STAMP: Final = msgspec.msgpack.Decoder(_Stamp)


class PruneResult(msgspec.Struct, frozen=True):
    """What one pruning batch did.

    Attributes:
        cursor: The last log position walked (everything up to it is out of the window).
        pruned: Rows deleted in this batch.
        more: True when the batch stopped at its limit with more to prune; False when it
            reached the window's edge (or the head).
        edge_ns: The timestamp of the first event kept because it is inside the window (the
            edge), when the batch stopped there; nothing is prunable before the cutoff passes
            it. None otherwise.
    """

    cursor: int
    pruned: int
    more: bool
    edge_ns: int | None = None


class IdempotencyStats(msgspec.Struct, frozen=True):
    """The idempotency table's size and reach.

    Attributes:
        entries: Rows in the table (command ids answered with their original result).
        oldest: Timestamp (ns since the epoch, UTC) of the oldest event not yet pruned, or
            None when the table is empty or the log holds nothing past the cursor.
        cursor: The pruning cursor (last log position walked).
    """

    entries: int
    oldest: int | None
    cursor: int


def normalize_window(window: IdempotencyWindow) -> float | RecentCommands | None:
    """Return ``window`` as seconds (float), a :class:`RecentCommands`, or None.

    Raises:
        ValueError: A negative or non-finite duration, or a count that is not an int >= 0.
        TypeError: Neither a number, a timedelta, RecentCommands nor None.
    """
    if window is None:
        return None
    if isinstance(window, RecentCommands):
        if isinstance(window.count, bool) or not isinstance(window.count, int) or window.count < 0:
            raise ValueError(f"RecentCommands.count must be an int >= 0, got {window.count!r}")
        return window
    if isinstance(window, timedelta):
        seconds = window.total_seconds()
    elif isinstance(window, int | float) and not isinstance(window, bool):
        seconds = float(window)
    else:
        raise TypeError(
            "idempotency_window is seconds (int, float or timedelta), RecentCommands(n) or None; "
            f"got {window!r}"
        )
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"idempotency_window must be a finite duration >= 0, got {window!r}")
    return seconds


def pruning_cursor_in_txn(txn: Txn, meta_db: Database) -> int:
    """Return the pruning cursor (0: nothing pruned yet)."""
    raw = txn.get(_CURSOR_KEY, db=meta_db)
    return 0 if raw is None else int.from_bytes(raw, "big")


def prune_commands_in_txn(  # noqa: PLR0917 - internal: tables and bounds, in order
    txn: Txn,
    dbs: dict[str, Database],
    frames: LogFrames,
    head: int,
    cutoff_ns: int | None,
    keep: int | None,
    limit: int,
) -> PruneResult:
    """Prune at most ``limit`` log positions' worth of idempotency rows inside ``txn``.

    Args:
        txn: A write transaction.
        dbs: The store's tables (``log``, ``commands``, ``meta``).
        frames: Expands compressed log values.
        head: The log's head, read before ``txn`` began.
        cutoff_ns: Prune commands whose events are older than this timestamp (None: no age
            limit).
        keep: Keep this many rows at least (None: no count limit).
        limit: Most log positions walked in this call.

    Returns:
        The new cursor, the rows deleted and whether more remains.
    """
    meta, commands = dbs["meta"], dbs["commands"]
    cursor = pruning_cursor_in_txn(txn, meta)
    start = cursor + 1
    excess = 0 if keep is None else txn.stat(commands)["entries"] - keep
    if (keep is not None and excess <= 0) or (cutoff_ns is None and keep is None):
        return PruneResult(cursor, 0, more=False)
    pruned = 0
    reached_edge = False
    edge_ns = None
    for offset, raw in enumerate(read_log_values(txn, dbs["log"], frames, start, limit, head)):
        stamp = _STAMP.decode(raw)
        if cutoff_ns is not None and stamp.timestamp >= cutoff_ns:
            reached_edge = True
            edge_ns = stamp.timestamp
            break
        position = start + offset
        if stamp.command_id:
            key = command_key(stamp.command_id)
            row = txn.get(key, db=commands)
            if row is not None:
                first, last = command_span(row)
                if first <= position <= last:
                    txn.delete(key, db=commands)
                    pruned += 1
        cursor = position
        if keep is not None and pruned >= excess:
            reached_edge = True
            break
    if cursor >= start:
        txn.put(_CURSOR_KEY, cursor.to_bytes(8, "big"), db=meta)
    more = not reached_edge and cursor < head
    return PruneResult(cursor, pruned, more=more, edge_ns=edge_ns)


def idempotency_stats_in_txn(
    txn: Txn, dbs: dict[str, Database], frames: LogFrames, head: int
) -> IdempotencyStats:
    """Return the table's size, the timestamp of the oldest event kept and the cursor."""
    entries: int = txn.stat(dbs["commands"])["entries"]
    cursor = pruning_cursor_in_txn(txn, dbs["meta"])
    oldest: int | None = None
    if entries and cursor < head:
        values = read_log_values(txn, dbs["log"], frames, cursor + 1, 1, head)
        if values:
            oldest = _STAMP.decode(values[0]).timestamp
    return IdempotencyStats(entries, oldest, cursor)


def cutoff_of(now: datetime, seconds: float) -> int:
    """Return the timestamp (ns, UTC) before which a command is out of a window of ``seconds``."""
    # Integer arithmetic from whole microseconds, like the timestamps the aggregates write.
    now_ns = int(now.timestamp() * 1_000_000) * 1000
    return now_ns - round(seconds * _NS)
