"""The LMDB backend's batch storage: one ``apply`` batch computed against a read snapshot.

The read model runs over :class:`_BatchStorage` outside the store's write lock: its tables read
the slot's snapshot (and the rows the view keeps decoded, see :mod:`views._row_cache`) and
buffer their writes as encoded values; :func:`compute` returns them as :class:`BatchChanges`,
which :func:`commit` writes in the short write transaction that also moves the checkpoint (see
:mod:`views._lmdb`). Keys are laid out as the plain storage's (:mod:`views._lmdb_storage`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Generic, TypeVar, cast

import lmdb
import msgspec

from store import ViewStore, last_key_under
from views._lmdb_keys import pack, unpack
from views._lmdb_storage import Db
from views._lmdb_storage import row_decoder as _decoder
from views._lmdb_storage import text_key as _key
from views._row_cache import RowCache, cacheable
from views._view import Storage

__all__ = ["BatchChanges", "BatchIndex", "commit", "compute"]

# Moved out of views._lmdb_storage as it was: the batch flavour (its tables, its buffer bounds,
# compute and commit) is one concept and made up two thirds of that module, which keeps the
# plain storage queries use and the key and decoder helpers both flavours share.

V = TypeVar("V")
T = TypeVar("T")  # what a batch applies: recorded events, or rows a rebuild folded

_encode = msgspec.msgpack.encode  # the same function views._lmdb_storage's plain tables use
_MISSING: Final = object()
# Buffer bounds, measured: rows written back while still in the CPU's cache encode about twice
# as fast as rows held for a whole batch (2,000 events), which made a batch touching each order
# once slower than writing through. A small buffer keeps the win of a batch that touches an order
# many times (one decode, fewer encodes) without that loss.
_BUFFERED_ROWS: Final = 64  # dirty rows of a table written to the transaction at once
_CACHED_ROWS: Final = 256  # decoded rows a table keeps after such a write


# A write to the slot: the encoded value, or None to delete the key.
_Writes = dict[bytes, bytes | None]


def _merged(txn: lmdb.Transaction, db: Db, writes: _Writes, prefix: bytes) -> list[bytes]:
    """Return the keys under ``prefix`` in the snapshot with ``writes`` applied, sorted."""
    keys = set()
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for key in cast("Iterator[bytes]", cursor.iternext(keys=True, values=False)):
            if not key.startswith(prefix):
                break
            keys.add(key)
    for key, value in writes.items():
        if key.startswith(prefix):
            if value is None:
                keys.discard(key)
            else:
                keys.add(key)
    return sorted(keys)


class _BatchTable(Generic[V]):
    """A table of one ``apply`` batch: reads a snapshot, buffers its writes as encoded values.

    Rows read or written stay decoded in ``_rows``, so the events of one order in a batch decode
    its row once; every row written stays in ``_written`` until the batch ends, and rows the view
    keeps decoded from earlier batches (``kept``, see :mod:`views._row_cache`) are read without
    LMDB. Written rows are encoded every ``_BUFFERED_ROWS`` rows (not at the end: rows encoded
    while still in the CPU's cache encode about twice as fast) into the batch's writes.
    """

    __slots__ = (
        "_db",
        "_decode",
        "_dirty",
        "_encoded",
        "_fulls",
        "_kept",
        "_name",
        "_prefix",
        "_rows",
        "_top",
        "_top_written",
        "_txn",
        "_writes",
        "_written",
        "cache",
    )

    def __init__(
        self,
        txn: lmdb.Transaction,
        db: Db,
        writes: _Writes,
        prefix: bytes,
        decoder: msgspec.msgpack.Decoder[V],
        *,
        cache: RowCache | None,
        name: str,
    ) -> None:
        self._txn = txn
        self._db = db
        self._writes = writes
        self._prefix = prefix
        self._decode = decoder.decode
        self._name = name
        # The slot's row cache, None if it has none or rows of this type are not kept (see
        # views._row_cache.cacheable): its committed rows, decoded (read only here), and the
        # bound of the table's keys (a key above it is absent: no LMDB get either).
        self.cache = cache
        self._kept: dict[str, Any] = {} if cache is None else cache.table(name)
        self._top: bytes | None = None if cache is None else cache.top(name)
        self._top_written = b""
        self._encoded = (0, 0)  # bytes and rows encoded by flush(): their mean size
        self._rows: dict[str, Any] = {}  # None: no row (absent, or deleted in this batch)
        self._dirty: set[str] = set()
        self._written: dict[str, V | None] = {}  # every row this batch wrote, as written last
        self._fulls: dict[str, bytes] = {}  # full keys get() built, for flush() to reuse

    def keep_into(self) -> None:
        """Tell the cache what this batch leaves committed (call once its commit succeeded)."""
        if self.cache is not None:
            encoded, count = self._encoded
            mean = encoded / count if count else 0.0
            self.cache.keep(self._name, self._rows, self._written, self._top_written, mean)

    def _absent(self, full: bytes) -> bool:
        """Return True if ``full`` is above every key the committed table holds."""
        top = self._top
        if top is None:
            if self.cache is None:
                return False
            # Read once per slot (then raised by each committed batch): the read snapshot is
            # the committed table, since only this view's thread writes it.
            top = self._top = self.cache.set_top(
                self._name, last_key_under(self._txn, self._db, self._prefix)
            )
        return full > top

    def get(self, key: str) -> V | None:
        rows = self._rows
        value = rows.get(key, _MISSING)
        if value is _MISSING:
            # Newest first: this batch's writes, the committed rows the view keeps decoded (see
            # views._row_cache), and only then LMDB.
            value = self._written.get(key, _MISSING)
            if value is _MISSING:
                value = self._kept.get(key, _MISSING)
            if value is _MISSING:
                full = self._fulls[key] = self._prefix + _key(key)
                if self._absent(full):
                    value = None  # a new key (time-ordered ids mostly are): no LMDB get
                else:
                    raw = self._txn.get(full, db=self._db)
                    value = None if raw is None else self._decode(cast("bytes", raw))
            rows[key] = value
        return cast("V | None", value)

    def put(self, key: str, value: V) -> None:
        self._rows[key] = value
        self._written[key] = value
        dirty = self._dirty
        dirty.add(key)
        if len(dirty) >= _BUFFERED_ROWS:
            self.flush()

    def delete(self, key: str) -> None:
        self._rows[key] = None
        self._written[key] = None
        dirty = self._dirty
        dirty.add(key)
        if len(dirty) >= _BUFFERED_ROWS:
            self.flush()

    def values(self) -> Iterator[V]:
        # Not on any hot path (no read model scans while applying): merges snapshot and writes.
        self.flush()
        txn, db, writes, decode = self._txn, self._db, self._writes, self._decode
        for key in _merged(txn, db, writes, self._prefix):
            raw = writes[key] if key in writes else txn.get(key, db=db)
            yield decode(cast("bytes", raw))

    def flush(self) -> None:
        """Encode the rows changed since the last flush into the batch's writes."""
        writes, prefix, rows, fulls = self._writes, self._prefix, self._rows, self._fulls
        top = self._top_written
        size = count = 0
        for key in self._dirty:
            value = rows[key]
            full = fulls.get(key) or prefix + _key(key)
            encoded = None if value is None else _encode(value)
            writes[full] = encoded
            if encoded is not None:
                size += len(encoded)
                count += 1
            top = max(top, full)
        self._top_written = top
        before = self._encoded
        self._encoded = (before[0] + size, before[1] + count)  # for the cache's byte budget
        self._dirty.clear()
        if len(rows) > _CACHED_ROWS:
            rows.clear()
            fulls.clear()


class BatchIndex:
    """An index of one batch: entries go to the batch's writes; scans merge them with a snapshot."""

    __slots__ = ("_db", "_prefix", "_txn", "_writes")

    def __init__(self, txn: lmdb.Transaction, db: Db, writes: _Writes, prefix: bytes) -> None:
        self._txn = txn
        self._db = db
        self._writes = writes
        self._prefix = prefix

    def add(self, group: str, position: int, value: str) -> None:
        key = self._prefix + _key(group) + b"\x00" + position.to_bytes(8, "big")
        self._writes[key] = pack(value)

    def scan(self, group: str, *, reverse: bool = False) -> Iterator[str]:
        # Not on any hot path (no read model scans while applying): merges snapshot and writes.
        prefix = self._prefix + _key(group) + b"\x00"
        length = len(prefix) + 8  # a group that itself contains NUL shares the prefix
        txn, db, writes = self._txn, self._db, self._writes
        keys = [key for key in _merged(txn, db, writes, prefix) if len(key) == length]
        for key in reversed(keys) if reverse else keys:
            raw = writes[key] if key in writes else txn.get(key, db=db)
            yield unpack(cast("bytes", raw))


class BatchChanges:
    """What one batch computed: the encoded writes, and its decoded rows for the row cache."""

    __slots__ = ("_tables", "writes")

    def __init__(self, writes: _Writes, tables: list[_BatchTable[Any]]) -> None:
        self.writes = writes
        self._tables = tables

    def keep_into(self) -> None:
        """Record the batch's rows in the slot's cache; call only once its writes are committed."""
        for table in self._tables:
            table.keep_into()


_NOTHING = BatchChanges({}, [])


class _BatchStorage:
    """The :class:`~views._view.Storage` of one ``apply`` batch: reads, and buffers writes.

    The read model runs against a read snapshot, outside the views store's write lock, so the
    other writers of the views environment (a rebuild's shadows, the periodic flush) never wait
    for a view's computing; :func:`commit` then writes the buffered changes in a short write
    transaction. Sound because one thread writes a view's slot (the
    view contract): the snapshot is what that write transaction starts from.
    """

    __slots__ = ("_cache", "_db", "_tables", "_txn", "_writes")

    def __init__(self, txn: lmdb.Transaction, db: Db, cache: RowCache | None) -> None:
        self._txn = txn
        self._db = db
        self._cache = cache
        self._writes: _Writes = {}
        self._tables: dict[str, _BatchTable[Any]] = {}  # one per name: one buffer per table

    def table(self, name: str, row_type: type[V]) -> _BatchTable[V]:
        table = self._tables.get(name)
        if table is None:
            prefix = b"t" + name.encode() + b"\x00"
            cache = self._cache if cacheable(row_type) else None
            table = _BatchTable(
                self._txn,
                self._db,
                self._writes,
                prefix,
                _decoder(row_type),
                cache=cache,
                name=name,
            )
            self._tables[name] = table
        return table

    def index(self, name: str) -> BatchIndex:
        return BatchIndex(self._txn, self._db, self._writes, b"i" + name.encode() + b"\x00")

    def finish(self) -> BatchChanges:
        """Return every change of the batch (the read transaction may end after this)."""
        for table in self._tables.values():
            table.flush()
        # Only the tables whose rows may be kept: the others' rows could still change.
        tables = [table for table in self._tables.values() if table.cache is not None]
        return BatchChanges(self._writes, tables)


def compute(
    store: ViewStore,
    db: Db,
    apply: Callable[[Storage, T], None],
    records: Sequence[T],
    cache: RowCache | None = None,
) -> BatchChanges:
    """Run ``apply`` over ``records`` against a read snapshot; return the changes to write.

    Args:
        store: The views store.
        db: The view's slot.
        apply: The read model's ``apply`` (or its ``apply_row``, for rows a rebuild folded).
        records: The batch (or the rows).
        cache: The slot's committed rows kept decoded (see :mod:`views._row_cache`), read here;
            the caller records the batch in it once the batch is committed.
    """

    def run(txn: lmdb.Transaction) -> BatchChanges:
        storage = _BatchStorage(txn, db, cache)
        for record in records:
            apply(storage, record)
        return storage.finish()

    return store.read(run) if records else _NOTHING


def commit(txn: lmdb.Transaction, db: Db, writes: _Writes) -> None:
    """Write ``writes`` into ``txn``, in key order (LMDB appends to sorted pages fastest)."""
    # Keys and values in two lists, zipped: (key, value) tuples would be objects for the cyclic
    # collector, one per row written (zip reuses one, as putmulti lets go of each pair).
    keys: list[bytes] = []
    values: list[bytes] = []
    for key in sorted(writes):
        value = writes[key]
        if value is None:
            txn.delete(key, db=db)
        else:
            keys.append(key)
            values.append(value)
    if keys:
        txn.cursor(db=db).putmulti(zip(keys, values, strict=True))
