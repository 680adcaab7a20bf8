"""The decoded rows an LMDB view last committed, kept across its apply batches.

Why: under load, a row read from LMDB costs far more than its decoding. py-lmdb lets go of the
GIL around every ``get``, and getting it back queues the projector behind the aggregates and the
log writer: measured at 1k orders x 20 commands in flight, a ``get`` took 35 us of the
projector's time against 0.8 us in a rebuild (where nothing else runs), and those waits were
about 40% of the projector's samples. Most events touch an order touched a moment before, so
the rows of recent orders are kept decoded here and the batch reads them without asking LMDB.

Sound because one thread writes a view's slot (the view contract): what was committed is what
the next batch's read snapshot holds. A batch changes the cache only once its write transaction
has committed; a batch that raised, or whose commit failed, leaves it as it was. Only rows of
immutable types are kept (frozen msgspec Structs and plain scalars): a read model that mutated a
row it had read, then failed, would otherwise leave a cached row the log never produced.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = ["KEPT_BYTES", "KEPT_ROWS", "CachedStorage", "NeedsLmdb", "RowCache", "cacheable"]

_MISSING: Final = object()
# Rows kept per table; the oldest half goes when it is full. Sized for a hundred thousand and
# more open orders: the rows are dropped in insertion order, so orders used in turn that
# outnumber the table all miss, and each miss reads and decodes the row from LMDB (py-lmdb lets
# go of the GIL for it) and keeps a copy the memory views do not share. At 16,384 a rebuild of
# 1M events over 50k interleaved orders ran at 26k events/s (1.36 GB peak), at 65,536 at 38-39k
# (1.16 GB); at 65,536 a write load over 100k orders (x 10 commands, default views) ran at
# 12.1-12.9k commands/s with a 1.59 GB peak, at 262,144 at 15.2-17.2k with 1.22 GB. A kept row
# costs a dict slot when it is shared with the memory views (the default engine; the shared fold
# makes rows read back from LMDB shared again), ~1.9 KB (9 lines) if not.
KEPT_ROWS: Final = 262144
# ... and fewer when rows are large: about this many bytes of rows (as encoded) per table. The
# rows count is sized for order rows (~300-500 bytes encoded, ~1.9 KB decoded); a read model with
# 10 KB rows would otherwise keep 262k of them, gigabytes when not shared.
KEPT_BYTES: Final = 128 * 2**20
_MIN_KEPT: Final = 1024  # however large the rows, a batch's worth stays kept
_SCALARS: Final = (int, float, str, bytes, bool)


def cacheable(row_type: type) -> bool:
    """Return True if rows of ``row_type`` cannot change once decoded, so they may be shared."""
    if isinstance(row_type, type) and issubclass(row_type, msgspec.Struct):
        return bool(row_type.__struct_config__.frozen)
    return row_type in _SCALARS


class RowCache:
    """Decoded committed rows per table of one view slot (``None``: known to be absent).

    Args:
        limit: Most rows kept per table.
        budget: About the most bytes of rows (as encoded) kept per table: a table whose rows
            are large keeps fewer than ``limit`` (never fewer than 1,024).
    """

    __slots__ = ("_budget", "_limit", "_row_bytes", "_tables", "_tops")

    def __init__(self, limit: int = KEPT_ROWS, budget: int = KEPT_BYTES) -> None:
        self._limit = limit
        self._budget = budget
        self._tables: dict[str, dict[str, Any]] = {}
        self._tops: dict[str, bytes] = {}  # per table: no committed key is above it
        self._row_bytes: dict[str, float] = {}  # per table: the mean size of the rows written

    def top(self, name: str) -> bytes | None:
        """Return a bound of table ``name``'s committed keys, None while unknown."""
        return self._tops.get(name)

    def set_top(self, name: str, top: bytes) -> bytes:
        """Record ``top``, the greatest committed key of table ``name`` read from LMDB."""
        self._tops[name] = top
        return top

    def rows_of(self, name: str) -> dict[str, Any] | None:
        """Return the kept rows of table ``name`` without creating them (readers' side)."""
        return self._tables.get(name)

    def table(self, name: str) -> dict[str, Any]:
        """Return the kept rows of table ``name`` (read them, never write: see :meth:`keep`)."""
        rows = self._tables.get(name)
        if rows is None:
            rows = self._tables[name] = {}
        return rows

    def keep(
        self,
        name: str,
        read: dict[str, Any],
        written: dict[str, Any],
        top_written: bytes,
        row_bytes: float = 0.0,
    ) -> None:
        """Record a committed batch of table ``name``.

        Args:
            name: The table.
            read: Rows the batch read (or wrote) and still holds decoded, as committed.
            written: Every row the batch wrote, as it wrote it last (None: deleted).
            top_written: The greatest full key the batch wrote (``b""``: none).
            row_bytes: The mean encoded size of the rows the batch wrote (0: not known).
        """
        top = self._tops.get(name)
        if top is not None and top_written > top:
            self._tops[name] = top_written  # unknown stays unknown: LMDB has them all
        if row_bytes:
            before = self._row_bytes.get(name)
            # A running mean that follows the rows as they grow (orders gain lines).
            self._row_bytes[name] = row_bytes if before is None else (before * 7 + row_bytes) / 8
        kept = self.table(name)
        kept.update(read)
        kept.update(written)
        limit = self.limit(name)
        if len(kept) > limit:
            # Dicts keep insertion order: drop the older half at once (amortized O(1) per row).
            keep_from = len(kept) - limit // 2
            self._tables[name] = dict(list(kept.items())[keep_from:])

    def limit(self, name: str) -> int:
        """Return how many rows table ``name`` keeps, from the size of the rows it wrote."""
        row_bytes = self._row_bytes.get(name)
        if not row_bytes:
            return self._limit
        return max(_MIN_KEPT, min(self._limit, int(self._budget / row_bytes)))

    def clear(self) -> None:
        """Forget every row and bound (the slot was emptied, swapped or its state is unknown)."""
        self._tables.clear()
        self._tops.clear()

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._tables.values())


class NeedsLmdb(BaseException):
    """Raised by :class:`CachedStorage` when a query needs more than the kept rows.

    A BaseException, so that a read model's own ``except Exception`` never swallows it.
    """


class _CachedTable:
    __slots__ = ("_cache", "_name")

    def __init__(self, cache: RowCache, name: str) -> None:
        self._cache = cache
        self._name = name

    def get(self, key: str) -> Any:
        # The table's dict is looked up at each get: RowCache.keep may replace it, and a query
        # that waited for a position must see the rows kept up to it.
        rows = self._cache.rows_of(self._name)
        value = _MISSING if rows is None else rows.get(key, _MISSING)
        if value is _MISSING:
            raise NeedsLmdb
        return value

    def values(self) -> Any:
        raise NeedsLmdb

    def put(self, key: str, value: Any) -> None:
        del key, value
        raise TypeError("queries do not write")

    def delete(self, key: str) -> None:
        del key
        raise TypeError("queries do not write")


class CachedStorage:
    """A read-only storage answering row gets from a view's kept rows, without LMDB.

    Why: a query's LMDB read transaction lets go of the GIL several times (begin, get, end),
    and under load each time costs a wait for it; most point queries ask about rows a batch
    touched a moment before. Anything the kept rows cannot answer (a row not kept, a scan, an
    index) raises :class:`NeedsLmdb` and the query runs again in a read transaction. Every row
    kept was committed before the view's position moved past it, so a query that waited for a
    position sees rows at least that new.
    """

    __slots__ = ("_cache",)

    def __init__(self, cache: RowCache) -> None:
        self._cache = cache

    def table(self, name: str, row_type: type) -> _CachedTable:
        """Return table ``name``; rows of a type the cache does not keep need LMDB."""
        if not cacheable(row_type):
            raise NeedsLmdb
        return _CachedTable(self._cache, name)

    def index(self, name: str) -> Any:
        """Indexes are not kept: LMDB."""
        del name
        raise NeedsLmdb
