r"""The LMDB backend: a read model's tables in named databases of the store's environment.

Layout. Each view owns two sub-databases, ``view:<name>:0`` and ``view:<name>:1`` (two *slots*);
the shared database ``view:_slots`` records which slot is live. The live slot's checkpoint is
the store checkpoint ``<name>``; a shadow (a rebuild in progress) fills the other slot under the
checkpoint ``<name>:shadow``. Adopting a shadow flips the slot pointer, moves the checkpoint and
empties the old slot in one write transaction, so a reader sees either the old or the new view.

Keys inside a slot: ``b"t" + table + b"\\0" + key`` for table rows (msgpack-encoded values) and
``b"i" + index + b"\\0" + group + b"\\0" + position (8 bytes, big-endian)`` for index entries, so a
group's entries sort by position and a prefix scan reads them in order. Keys too long for LMDB
(more than 400 UTF-8 bytes) are replaced by ``b"\\xff"`` + a 32-byte BLAKE2b digest; ``0xff``
never occurs in UTF-8, so a digest never collides with a plain key.

Transactions. ``apply`` writes rows and checkpoint in ONE write transaction (``store.write``), so
a batch is applied exactly once or not at all. Every query runs in its own short read transaction
(``store.read``): it sees one committed state and never pins pages for long.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, Final, Generic, TypeVar, cast

import lmdb
import msgspec
import structlog

from domain.errors import EngineClosed
from store import EventStore, RecordedEvent
from views._view import Backend, ReadModel, View, check_query_type, check_up_to

__all__ = ["LmdbView"]

_log = structlog.get_logger(__name__)

V = TypeVar("V")

# lmdb's stubs name the handle type privately (lmdb._Database); store.open_db() returns it.
_Db = Any

_SLOTS_DB: Final = "view:_slots"
_MAX_PLAIN_KEY: Final = 400  # LMDB's default key limit is 511 bytes; leave room for prefixes
_DECODERS: dict[type, msgspec.msgpack.Decoder[Any]] = {}
_encode = msgspec.msgpack.encode
_MISSING: Final = object()


def _key(text: str) -> bytes:
    raw = text.encode()
    if len(raw) <= _MAX_PLAIN_KEY:
        return raw
    return b"\xff" + hashlib.blake2b(raw, digest_size=32).digest()


def _items(entries: Iterator[tuple[Any, Any]]) -> Iterator[tuple[bytes, bytes]]:
    # The store's transactions are opened without buffers=True: keys and values are bytes.
    return cast("Iterator[tuple[bytes, bytes]]", entries)


def _decoder(row_type: type[V]) -> msgspec.msgpack.Decoder[V]:
    decoder = _DECODERS.get(row_type)
    if decoder is None:
        # Built once per row type; decoding is stateless, so threads share them.
        decoder = _DECODERS[row_type] = msgspec.msgpack.Decoder(row_type)
    return decoder


class _LmdbTable(Generic[V]):
    __slots__ = ("_db", "_decode", "_prefix", "_txn")

    def __init__(
        self, txn: lmdb.Transaction, db: _Db, prefix: bytes, decoder: msgspec.msgpack.Decoder[V]
    ) -> None:
        self._txn = txn
        self._db = db
        self._prefix = prefix
        self._decode = decoder.decode

    def get(self, key: str) -> V | None:
        raw = self._txn.get(self._prefix + _key(key), db=self._db)
        return None if raw is None else self._decode(raw)

    def put(self, key: str, value: V) -> None:
        self._txn.put(self._prefix + _key(key), _encode(value), db=self._db)

    def delete(self, key: str) -> None:
        self._txn.delete(self._prefix + _key(key), db=self._db)

    def values(self) -> Iterator[V]:
        prefix, decode = self._prefix, self._decode
        cursor = self._txn.cursor(db=self._db)
        if not cursor.set_range(prefix):
            return
        for key, value in _items(cursor.iternext()):
            if not key.startswith(prefix):
                return
            yield decode(value)


class _LmdbIndex:
    __slots__ = ("_db", "_prefix", "_txn")

    def __init__(self, txn: lmdb.Transaction, db: _Db, prefix: bytes) -> None:
        self._txn = txn
        self._db = db
        self._prefix = prefix

    def add(self, group: str, position: int, value: str) -> None:
        key = self._prefix + _key(group) + b"\x00" + position.to_bytes(8, "big")
        self._txn.put(key, value.encode(), db=self._db)

    def scan(self, group: str, *, reverse: bool = False) -> Iterator[str]:
        prefix = self._prefix + _key(group) + b"\x00"
        # A group that itself contains NUL shares the prefix; the exact length tells them apart.
        length = len(prefix) + 8
        cursor = self._txn.cursor(db=self._db)
        if reverse:
            # Start at the last key below prefix[:-1] + b"\x01", the first key after the group.
            found = cursor.prev() if cursor.set_range(prefix[:-1] + b"\x01") else cursor.last()
            entries = cursor.iterprev() if found else iter(())
        else:
            entries = cursor.iternext() if cursor.set_range(prefix) else iter(())
        for key, value in _items(entries):
            if not key.startswith(prefix):
                return
            if len(key) == length:
                yield value.decode()


class _BufferedTable(_LmdbTable[V]):
    """A table of one write transaction that decodes each row once and encodes it once.

    Rows read or written during an ``apply`` batch stay decoded in ``_rows``; the written ones
    reach LMDB at :meth:`flush` (key order, which LMDB writes fastest), before the checkpoint and
    in the same transaction. If the batch raises, the transaction aborts and the storage that
    owns this table (and its buffer) is dropped with it.
    """

    __slots__ = ("_dirty", "_rows")

    def __init__(
        self, txn: lmdb.Transaction, db: _Db, prefix: bytes, decoder: msgspec.msgpack.Decoder[V]
    ) -> None:
        super().__init__(txn, db, prefix, decoder)
        self._rows: dict[str, V | None] = {}  # None: no row (absent, or deleted in this batch)
        self._dirty: set[str] = set()

    def get(self, key: str) -> V | None:
        rows = self._rows
        value = rows.get(key, _MISSING)
        if value is _MISSING:
            value = rows[key] = super().get(key)
        return cast("V | None", value)

    def put(self, key: str, value: V) -> None:
        self._rows[key] = value
        self._dirty.add(key)

    def delete(self, key: str) -> None:
        self._rows[key] = None
        self._dirty.add(key)

    def values(self) -> Iterator[V]:
        self.flush()  # the cursor reads LMDB: it must see this batch's writes
        return super().values()

    def flush(self) -> None:
        """Write the rows changed since the last flush to the transaction."""
        txn, db, prefix, rows = self._txn, self._db, self._prefix, self._rows
        for key in sorted(self._dirty):
            value = rows[key]
            if value is None:
                txn.delete(prefix + _key(key), db=db)
            else:
                txn.put(prefix + _key(key), _encode(value), db=db)
        self._dirty.clear()


class _LmdbStorage:
    """A :class:`~views._view.Storage` over one transaction and one slot database.

    With ``buffered`` (the write transactions of ``apply``), tables keep their rows decoded until
    :meth:`flush`; one table object per name, so every read of a row sees the batch's writes.
    """

    __slots__ = ("_buffered", "_db", "_tables", "_txn")

    def __init__(self, txn: lmdb.Transaction, db: _Db, *, buffered: bool = False) -> None:
        self._txn = txn
        self._db = db
        self._buffered = buffered
        self._tables: dict[str, _LmdbTable[Any]] = {}

    def table(self, name: str, row_type: type[V]) -> _LmdbTable[V]:
        table = self._tables.get(name)
        if table is None:
            kind = _BufferedTable if self._buffered else _LmdbTable
            prefix = b"t" + name.encode() + b"\x00"
            table = self._tables[name] = kind(self._txn, self._db, prefix, _decoder(row_type))
        return table

    def index(self, name: str) -> _LmdbIndex:
        return _LmdbIndex(self._txn, self._db, b"i" + name.encode() + b"\x00")

    def flush(self) -> None:
        """Write every buffered table's pending rows to the transaction."""
        for table in self._tables.values():
            if isinstance(table, _BufferedTable):
                table.flush()


class LmdbView:
    """A read model persisted in LMDB; see :class:`~views.View` for the contract.

    Its checkpoint persists with its rows: after a restart it resumes where it stopped, without
    replaying the log.

    Args:
        model: The read model's logic.
        store: The open event store whose environment holds the view.
        skip_unknown: Opt-in: the projector skips (and counts) events it cannot decode.
    """

    backend: Backend = "lmdb"

    def __init__(
        self,
        model: ReadModel,
        store: EventStore,
        *,
        skip_unknown: bool = False,
        shadow_slot: int | None = None,
    ) -> None:
        self.name = model.name
        self.tags = model.tags
        self.query_types = model.query_types
        self.skip_unknown = skip_unknown
        self._model = model
        self._store = store
        self._slots_db: _Db = store.open_db(_SLOTS_DB)
        self._slot_dbs: tuple[_Db, _Db] = (
            store.open_db(f"view:{model.name}:0"),
            store.open_db(f"view:{model.name}:1"),
        )
        self._name_key = model.name.encode()
        self._closed = False
        if shadow_slot is None:
            self._slot = store.read(self._live_slot)
            self._checkpoint_key = model.name
        else:  # a shadow writes to a fixed slot, never the live one
            self._slot = shadow_slot
            self._checkpoint_key = f"{model.name}:shadow"
        self._position = store.checkpoint(self._checkpoint_key)

    @property
    def is_shadow(self) -> bool:
        """True for a shadow made by :meth:`new_shadow` (not yet adopted)."""
        return self._checkpoint_key != self.name

    @property
    def slot(self) -> int:
        """The slot (0 or 1) this view writes to."""
        return self._slot

    @property
    def checkpoint_key(self) -> str:
        """The store checkpoint holding this view's position."""
        return self._checkpoint_key

    @property
    def store(self) -> EventStore:
        """The event store whose environment holds the view."""
        return self._store

    def __repr__(self) -> str:
        kind = "shadow " if self.is_shadow else ""
        return f"LmdbView({kind}{self.name!r}, slot={self._slot}, position={self._position})"

    def _live_slot(self, txn: lmdb.Transaction) -> int:
        return 1 if txn.get(self._name_key, db=self._slots_db) == b"1" else 0

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(f"view {self.name!r} is closed")

    def position(self) -> int:
        """Return the last position committed (0 = none); cached, no transaction."""
        self._check_open()
        return self._position

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Apply ``events`` and set the checkpoint to ``up_to``, all in one write transaction.

        If any event raises, the transaction aborts: neither rows nor checkpoint change.
        """
        self._check_open()
        check_up_to(self.name, events, up_to)
        current = self._position
        fresh = [record for record in events if record.position > current]
        target = max(current, up_to)
        if not fresh and target == current:
            return
        apply, db, key = self._model.apply, self._slot_dbs[self._slot], self._checkpoint_key
        store = self._store

        def run(txn: lmdb.Transaction) -> None:
            # Re-run from scratch by store.write after a map growth: it only writes through txn.
            storage = _LmdbStorage(txn, db, buffered=True)
            for record in fresh:
                apply(storage, record)
            storage.flush()  # the rows, then the checkpoint: one transaction
            store.set_checkpoint(key, target, txn)

        store.write(run)
        self._position = target

    def reapply(self, event: RecordedEvent) -> None:
        """Apply one (parked) event in its own transaction, without moving the checkpoint."""
        self._check_open()
        apply, db = self._model.apply, self._slot_dbs[self._slot]

        def run(txn: lmdb.Transaction) -> None:
            storage = _LmdbStorage(txn, db, buffered=True)
            apply(storage, event)
            storage.flush()

        self._store.write(run)

    def query(self, query: object) -> object:
        """Answer ``query`` in one short read transaction."""
        self._check_open()
        check_query_type(self, query)
        model, dbs = self._model, self._slot_dbs
        if self.is_shadow:
            db = dbs[self._slot]
            return self._store.read(lambda txn: model.query(_LmdbStorage(txn, db), query))
        # Read the live slot inside the same transaction, so a concurrent adopt is either wholly
        # visible or not at all.
        return self._store.read(
            lambda txn: model.query(_LmdbStorage(txn, dbs[self._live_slot(txn)]), query)
        )

    def new_shadow(self) -> LmdbView:
        """Return an empty shadow in the other slot (emptied now) at position 0.

        A view has one shadow at a time: a new one discards the previous one's rows.

        Raises:
            TypeError: This view is itself a shadow.
        """
        self._check_open()
        if self.is_shadow:
            raise TypeError(f"view {self.name!r}: a shadow cannot have a shadow")
        other = 1 - self._slot
        shadow_key = f"{self.name}:shadow"
        db, store = self._slot_dbs[other], self._store

        def reset(txn: lmdb.Transaction) -> None:
            txn.drop(db, delete=False)
            store.set_checkpoint(shadow_key, 0, txn)

        store.write(reset)
        _log.info("view_shadow_created", view=self.name, backend=self.backend, slot=other)
        return LmdbView(self._model, store, skip_unknown=self.skip_unknown, shadow_slot=other)

    def adopt(self, shadow: View) -> None:
        """Make ``shadow``'s rows and position live in one transaction.

        The slot pointer flips, the checkpoint moves, the old slot is emptied; the shadow is
        closed.

        Raises:
            TypeError: ``shadow`` is not an open shadow made by this view's :meth:`new_shadow`.
        """
        self._check_open()
        if (
            not isinstance(shadow, LmdbView)
            or not shadow.is_shadow
            or shadow.store is not self._store
            or shadow.name != self.name
            or shadow.slot == self._slot
        ):
            raise TypeError(f"view {self.name!r} can only adopt its own open LMDB shadow")
        new_slot, position, shadow_key = shadow.slot, shadow.position(), shadow.checkpoint_key
        old_db, store = self._slot_dbs[self._slot], self._store

        def flip(txn: lmdb.Transaction) -> None:
            txn.put(self._name_key, str(new_slot).encode(), db=self._slots_db)
            store.set_checkpoint(self._checkpoint_key, position, txn)
            store.set_checkpoint(shadow_key, 0, txn)
            txn.drop(old_db, delete=False)

        store.write(flip)
        self._slot, self._position = new_slot, position
        shadow.close()
        _log.info("view_adopted", view=self.name, backend=self.backend, position=position)

    def clear(self) -> None:
        """Empty the view and reset its checkpoint to 0, in one transaction."""
        self._check_open()
        db, store = self._slot_dbs[self._slot], self._store

        def empty(txn: lmdb.Transaction) -> None:
            txn.drop(db, delete=False)
            store.set_checkpoint(self._checkpoint_key, 0, txn)

        store.write(empty)
        self._position = 0
        _log.info("view_cleared", view=self.name, backend=self.backend)

    def close(self) -> None:
        """Stop using the store (which stays open: it belongs to the engine). Idempotent."""
        self._closed = True
