"""A shadow's rows, kept decoded across its batches and written to its slot in large commits.

Why: a rebuild replays the whole log into a shadow that nothing reads until it is adopted. Written
like a live view, batch by batch, each of its rows was encoded and written once per event (the
bench's log interleaves 50k orders, so a batch of 2,000 events touches an order about once): the
encodes, keys, reads and commits of the two LMDB views were 29% of a rebuild of all four
(py-spy). A shadow keeps its rows decoded here instead, as a memory view does, and writes them
out when a table holds more than :data:`BULK_ROWS` rows (the older half then leaves memory) and
before it is adopted, so each row is encoded a few times per rebuild, not once per event.

Semantics are the memory view's: events apply one by one and the position moves after each, so
an event that raises leaves nothing of itself (read models compute before they write) and the
projector's event-by-event fallback finds it. Every write-out carries the shadow's checkpoint in
the same transaction, so the slot on disk is always a consistent prefix of the log; a crash loses
the buffer only, and a shadow is never resumed after a restart (its next rebuild empties it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, Generic, TypeVar, cast

import lmdb
import msgspec

from store import RecordedEvent, ViewStore
from views._lmdb_batch import BatchIndex, commit
from views._lmdb_storage import Db, row_decoder, text_key
from views._row_cache import cacheable
from views._view import Storage

__all__ = ["BULK_ROWS", "BulkRows"]

V = TypeVar("V")

BULK_ROWS: Final = 65536
"""Rows a shadow's table keeps decoded; past it, everything is written and the older half let go.

The same bound as the rows a live view keeps decoded (:data:`views._row_cache.KEPT_ROWS`), and for
the same reason: in a rebuild of several views the rows are the very objects the other views hold
(the shared fold), so keeping them costs a dict slot each."""

_MISSING: Final = object()
_encode = msgspec.msgpack.encode

# A write to the slot: the encoded value, or None to delete the key.
_Writes = dict[bytes, bytes | None]


class _BulkTable(Generic[V]):
    """One table of a shadow: its rows (None: absent), the changed ones marked dirty.

    Rows of immutable types are kept decoded and handed out as they are. Rows of other types
    are kept encoded and decoded at each ``get``, as from LMDB: a read model that changed a row
    it had read in place and then failed would otherwise leave a row the log never produced
    (the rule :mod:`views._row_cache` keeps for the same reason).
    """

    __slots__ = ("_bulk", "_decode", "_dirty", "_prefix", "_top", "frozen", "rows")

    def __init__(self, bulk: BulkRows, prefix: bytes, row_type: type[V]) -> None:
        self._bulk = bulk
        self._prefix = prefix
        self._decode = row_decoder(row_type).decode
        self.frozen = cacheable(row_type)
        self.rows: dict[str, Any] = {}  # decoded rows, or encoded ones (see above)
        self._dirty: set[str] = set()
        # The greatest key written to the slot: a key above it is absent (the slot was empty
        # when the shadow began), so new keys, time-ordered ids mostly, cost no LMDB get.
        self._top = b""

    def get(self, key: str) -> V | None:
        value = self.rows.get(key, _MISSING)
        if value is _MISSING:
            value = self._read(key)
        if self.frozen or value is None:
            return cast("V | None", value)
        return self._decode(cast("bytes", value))

    def _read(self, key: str) -> Any:
        """Read a row that is not in memory from the slot (None: absent), and keep it."""
        full = self._prefix + text_key(key)
        raw = None if full > self._top else self._bulk.snapshot.get(full, db=self._bulk.db)
        value = self._decode(cast("bytes", raw)) if raw is not None and self.frozen else raw
        self.rows[key] = value
        return value

    def put(self, key: str, value: V) -> None:
        self.rows[key] = value if self.frozen else _encode(value)
        self._dirty.add(key)

    def delete(self, key: str) -> None:
        self.rows[key] = None
        self._dirty.add(key)

    def values(self) -> Iterator[V]:
        # Not on any hot path (no read model scans while applying): merges the written rows
        # with the buffered ones, in stored-key order like every LMDB table.
        prefix, txn, db = self._prefix, self._bulk.snapshot, self._bulk.db
        stored: dict[bytes, bytes] = {}
        cursor = txn.cursor(db=db)
        if cursor.set_range(prefix):
            for key, value in cast("Iterator[tuple[bytes, bytes]]", cursor.iternext()):
                if not key.startswith(prefix):
                    break
                stored[key] = value
        buffered = {prefix + text_key(key): value for key, value in self.rows.items()}
        for full in sorted(stored.keys() | buffered.keys()):
            if full not in buffered:
                yield self._decode(stored[full])
            elif (row := buffered[full]) is not None:
                yield row if self.frozen else self._decode(row)

    def pending(self, writes: _Writes) -> bytes:
        """Add the encoded changed rows to ``writes``; return the greatest key added (or b"")."""
        prefix, rows, frozen = self._prefix, self.rows, self.frozen
        top = b""
        for key in self._dirty:
            value = rows[key]
            if value is not None and frozen:
                value = _encode(value)
            full = prefix + text_key(key)
            writes[full] = value
            top = max(top, full)
        return top

    def written(self, top: bytes, limit: int) -> None:
        """The pending rows (keys up to ``top``) are in the slot: clean, at most ``limit`` kept."""
        self._top = max(self._top, top)
        self._dirty.clear()
        rows = self.rows
        if len(rows) > limit:
            # Dicts keep insertion order: the older half goes at once (every row is clean now).
            self.rows = dict(list(rows.items())[len(rows) - limit // 2 :])

    @property
    def dirty(self) -> int:
        """How many rows changed since the last write-out."""
        return len(self._dirty)


class BulkRows:
    """The :class:`~views._view.Storage` of a shadow: rows kept decoded between write-outs.

    Its owner (:class:`~views._lmdb.LmdbView`) applies events with :meth:`run` (which writes
    out by itself when a table is :attr:`full`) and calls :meth:`write_out` before the shadow is
    adopted. One thread uses it (the view contract: one writer per slot).

    Args:
        store: The views store.
        db: The shadow's slot, empty when the shadow begins.
        checkpoint_key: The shadow's checkpoint, written with each write-out.
        apply: The read model's ``apply``.
        position: The shadow's position when it begins.
        limit: Rows a table keeps decoded (see :data:`BULK_ROWS`).
    """

    __slots__ = (
        "_apply",
        "_checkpoint_key",
        "_index_writes",
        "_limit",
        "_saved",
        "_store",
        "_tables",
        "db",
        "position",
        "snapshot",
    )

    def __init__(
        self,
        store: ViewStore,
        db: Db,
        checkpoint_key: str,
        apply: Callable[[Storage, RecordedEvent], None],
        *,
        position: int = 0,
        limit: int = BULK_ROWS,
    ) -> None:
        self._store = store
        self.db = db
        self._checkpoint_key = checkpoint_key
        self._apply = apply
        self.position = position  # the last event applied
        self._saved = position  # the position of the last write-out (the slot's checkpoint)
        self._limit = limit
        self._tables: dict[str, _BulkTable[Any]] = {}
        self._index_writes: _Writes = {}
        self.snapshot: lmdb.Transaction = cast("lmdb.Transaction", None)  # set while applying

    def table(self, name: str, row_type: type[V]) -> _BulkTable[V]:
        table = self._tables.get(name)
        if table is None:
            prefix = b"t" + name.encode() + b"\x00"
            table = self._tables[name] = _BulkTable(self, prefix, row_type)
        return table

    def index(self, name: str) -> BatchIndex:
        # Index entries are only ever added, and kept encoded: a scan merges them with the slot.
        prefix = b"i" + name.encode() + b"\x00"
        return BatchIndex(self.snapshot, self.db, self._index_writes, prefix)

    def run(self, records: Sequence[RecordedEvent], up_to: int) -> None:
        """Apply ``records`` one by one, then move to ``up_to``; write out if now full.

        :attr:`position` follows each event applied: if one raises, it stays at the last event
        applied, and nothing of the failing one remains (read models compute, then write).

        Args:
            records: The events, in position order, all after :attr:`position`.
            up_to: The position reached once they are applied.
        """
        self._store.read(lambda txn: self._apply_all(txn, records))
        self.position = max(self.position, up_to)
        if self.full:
            self.write_out()

    def load(
        self, rows: Iterable[Any], up_to: int, apply_row: Callable[[Storage, Any], None]
    ) -> None:
        """Write rows a rebuild folded, with ``apply_row``; then move as :meth:`run` does."""

        def write_rows(snapshot: lmdb.Transaction) -> None:
            self.snapshot = snapshot  # what was written out so far: read for rows not in memory
            try:
                for row in rows:
                    apply_row(self, row)
            finally:
                self.snapshot = cast("lmdb.Transaction", None)

        self._store.read(write_rows)
        self.position = max(self.position, up_to)
        if self.full:
            self.write_out()

    def reapply(self, record: RecordedEvent) -> None:
        """Apply one (parked) event again without moving :attr:`position`."""
        position = self.position
        try:
            self._store.read(lambda txn: self._apply_all(txn, [record]))
        finally:
            self.position = position

    def _apply_all(self, snapshot: lmdb.Transaction, records: Sequence[RecordedEvent]) -> None:
        self.snapshot = snapshot  # what was written out so far: read for rows not in memory
        apply = self._apply
        try:
            for record in records:
                apply(self, record)
                self.position = record.position
        finally:
            self.snapshot = cast("lmdb.Transaction", None)  # it ends with the caller's read

    def write_out(self) -> None:
        """Write every change, with the position as the checkpoint, in one transaction."""
        if not self.dirty:
            return
        (writes, tops), position, db = self._collect(), self.position, self.db
        store, key = self._store, self._checkpoint_key

        def write(txn: lmdb.Transaction) -> None:
            commit(txn, db, writes)  # re-run from scratch after a map growth: only writes
            store.set_checkpoint(key, position, txn)

        store.write(write)
        # Only now: a failed write leaves the rows buffered, to write again.
        self._written(position, tops)

    @property
    def full(self) -> bool:
        """True when a table holds more rows than the limit: time to write out."""
        limit = self._limit
        return len(self._index_writes) > limit or any(
            len(table.rows) > limit for table in self._tables.values()
        )

    @property
    def dirty(self) -> bool:
        """True if anything changed since the last write-out, the position included."""
        return (
            self.position != self._saved
            or bool(self._index_writes)
            or any(table.dirty for table in self._tables.values())
        )

    def pending(self) -> _Writes:
        """Return every change since the last write-out, encoded (the buffer keeps them)."""
        return self._collect()[0]

    def _collect(self) -> tuple[_Writes, list[bytes]]:
        """Return every change, encoded, and each table's greatest key among them."""
        writes = dict(self._index_writes)
        tops = [table.pending(writes) for table in self._tables.values()]
        return writes, tops

    def _written(self, position: int, tops: list[bytes]) -> None:
        """What :meth:`_collect` returned is committed with ``position``: forget it, trim."""
        self._saved = position
        self._index_writes.clear()
        for table, top in zip(self._tables.values(), tops, strict=True):
            table.written(top, self._limit)

    def decoded(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (table name, rows) of the tables whose rows are kept decoded (immutable types).

        Once written out, they are the slot's committed rows (None: known absent): the view
        that adopts the slot keeps them (see :meth:`views._lmdb.LmdbView.adopt`).
        """
        for name, table in self._tables.items():
            if table.frozen:
                yield name, table.rows

    def clear(self) -> None:
        """Forget every row (the slot was emptied, its position reset to 0)."""
        self._tables.clear()
        self.position = self._saved = 0
        self._index_writes.clear()
