"""Upper bounds of the keys the idempotency, heads and snapshots tables may hold.

Reads of keys above them need no LMDB.

Why: py-lmdb lets go of the GIL around each call, and under load taking it back costs the caller
tens of microseconds. Time-ordered ids (``domain.ids.new_id``, the default for command and
aggregate ids) make most lookups ask about a key above every key in its table: a new command
at the engine's door, a new aggregate's snapshot and stream when it is first activated. Such a
key cannot be there, so the answer (absent) needs no read.

A bound is never below a key the table holds, whatever runs concurrently: it is the table's last
key when first needed, and :meth:`KeyBounds.raise_for` raises it *before* each append's write
transaction begins, so a commit, even one reported as failed after it happened, only ever
writes keys already under it. Pruning deletes keys and leaves the bounds as they are (still
bounds). Stream bounds are per stream type (a type's keys are ``type NUL id``; another type
whose keys sort after it must not hide its new ids), each read from LMDB on first use under the
lock that :meth:`KeyBounds.raise_for` holds, so a first read racing an append cannot store a
bound below what that append writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from domain.errors import InvalidCommand
from store._log import last_command_key, stream_key, top_command_key
from store._records import StreamAppend

if TYPE_CHECKING:
    from store._env import AnyTxn, Database

__all__ = ["KeyBounds", "last_key_under"]


def last_key_under(txn: AnyTxn, db: Database, prefix: bytes) -> bytes:
    """Return the greatest key of ``db`` that starts with ``prefix`` (``b""``: none).

    ``prefix`` ends with NUL (``type NUL`` here, ``table NUL`` in an LMDB view's slot): the
    first key after all of them is at or after the prefix with that NUL made 0x01.
    """
    cursor = txn.cursor(db=db)
    found = cursor.prev() if cursor.set_range(prefix[:-1] + b"\x01") else cursor.last()
    if not found:
        return b""
    key = bytes(cursor.key())
    return key if key.startswith(prefix) else b""


class KeyBounds:
    """The bounds of one event store's idempotency table and, per stream type, of its streams.

    Args:
        read: The store's ``read`` (runs a function in a short read transaction).
        dbs: The store's tables by name (``commands``, ``heads``, ``snapshots``).
    """

    def __init__(self, read: Callable[[Callable[[Any], Any]], Any], dbs: dict[str, Any]) -> None:
        self._read = read
        self._heads = dbs["heads"]
        self._snapshots = dbs["snapshots"]
        commands = dbs["commands"]
        self._lock = threading.Lock()
        self._command: bytes = read(lambda txn: last_command_key(txn, commands))
        self._streams: dict[bytes, bytes] = {}  # raw stream type -> bound of its keys

    def command_is_new(self, key: bytes) -> bool:
        """Return True if no command id key ``key`` can be in the idempotency table."""
        return key > self._command

    def stream_is_new(self, key: bytes) -> bool:
        """Return True if the stream whose :func:`~store._log.stream_key` is ``key`` has no event.

        Its head, index entries and snapshot are then absent too.
        """
        raw_type = key[: key.index(b"\x00")]
        top = self._streams.get(raw_type)
        if top is None:
            with self._lock:
                top = self._stream_bound(raw_type)
        return key > top

    def raise_for(self, appends: Sequence[StreamAppend]) -> None:
        """Raise the bounds over every key ``appends`` may write; call before their write."""
        commands = top_command_key(appends)
        with self._lock:
            self._command = max(self._command, commands)
            for append in appends:
                try:
                    key = stream_key(append.stream_type, append.stream_id)
                except InvalidCommand:
                    continue  # refused by the append itself: never written
                raw_type = key[: key.index(b"\x00")]
                top = self._stream_bound(raw_type)
                if key > top:
                    self._streams[raw_type] = key

    def raise_for_snapshot(self, key: bytes) -> None:
        """Raise the bound of ``key``'s stream type over ``key``; call before saving its snapshot.

        A snapshot may be saved apart from any append (``EventStore.save_snapshot``).
        """
        raw_type = key[: key.index(b"\x00")]
        with self._lock:
            if key > self._stream_bound(raw_type):
                self._streams[raw_type] = key

    def _stream_bound(self, raw_type: bytes) -> bytes:
        # Called with the lock held: a first read and an append's raise never interleave.
        top = self._streams.get(raw_type)
        if top is None:
            heads, snapshots = self._heads, self._snapshots
            top = self._streams[raw_type] = self._read(
                lambda txn: max(
                    last_key_under(txn, heads, raw_type + b"\x00"),
                    last_key_under(txn, snapshots, raw_type + b"\x00"),
                )
            )
        return top
