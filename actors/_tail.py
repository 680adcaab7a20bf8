"""The event tail: committed events decoded once and shared by every projector.

Without it every projector re-read and re-decoded every event from LMDB, once per view, although
the writer held them decoded a moment before. Now:

- **live**: the writer publishes each commit's events as :class:`~store.RecordedEvent` records
  built from the events it just committed (nothing is re-read from LMDB);
- **catching up**: a projector that asks for events the tail does not hold makes the tail decode
  the whole aligned *chunk* around them once; every other projector reading that chunk shares the
  decoded records.

Events are kept in aligned chunks of :data:`CHUNK` positions (chunk ``k`` holds positions
``k * CHUNK + 1 ...``), each a contiguous prefix of its range, and at most ``max_chunks`` chunks
are kept (least recently used first out), so memory stays bounded whatever the lag. Records are
immutable, so a projector may keep the slices it got.

A miss decodes only the tags some reader handles (each reader says which when it registers;
a reader that takes every event, as a saga does, turns this off): a chunk decoded so keeps
``None`` at the positions of other tags, and a read then returns a :class:`~store.ReadBatch`
of the records asked for that knows the last position it covers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, cast

from domain.errors import CorruptLog
from store import ProjectionLog, ReadBatch, RecordedEvent

__all__ = ["CHUNK", "EventTail"]

CHUNK: Final = 1024
"""Positions per chunk: large enough to amortise a read transaction, small enough to share."""


class EventTail:
    """Decoded committed events, shared by the projectors (thread-safe).

    Args:
        store: The event store to decode from on a miss.
        max_chunks: Most chunks kept (each holds up to :data:`CHUNK` records).
    """

    def __init__(self, store: ProjectionLog, *, max_chunks: int = 64) -> None:
        self._store = store
        self._max_chunks = max_chunks
        # None marks a position whose record was left undecoded (a tag no reader handles).
        self._chunks: OrderedDict[int, list[RecordedEvent | None]] = OrderedDict()
        self._tags: frozenset[str] | None = None  # the union of the readers' tags; None: all
        self._lock = threading.Lock()
        self.decoded = 0  # records decoded from LMDB (misses), for tests and the bench
        self.published = 0  # records handed over by the writer
        self.readers = 0  # projectors and sagas reading it: none, and the writer publishes nothing
        self._next: list[int] = []  # per reader: the furthest position a read of it started at

    def reader(
        self, tags: frozenset[str] | None = None
    ) -> Callable[[int, int], list[RecordedEvent]]:
        """Register a reader (a projector, a saga) and return its :meth:`read`.

        The writer hands records over only while someone reads them: in projection-process
        mode every view may live in the child, and building records nobody reads would cost
        the engine's process ~1-2 us per event for nothing. A reader registered later finds
        what it lacks by decoding (a miss), as after any gap.

        Args:
            tags: The tags this reader handles (it skips the other records); None: every one.
                Misses decode only the tags of some reader; a reader widening them drops the
                chunks decoded so far.
        """
        with self._lock:
            if self.readers == 0:
                wanted = tags  # the first reader says what is wanted
            else:
                wanted = None if tags is None or self._tags is None else self._tags | tags
            self.readers += 1
            if wanted != self._tags:
                self._tags = wanted
                self._chunks.clear()  # chunks decoded for fewer tags would lack records
            slot = len(self._next)
            self._next.append(0)
        starts, read = self._next, self.read

        def read_from(start: int, limit: int) -> list[RecordedEvent]:
            # The furthest, not the last: a projector reads for each of its views in turn, and
            # one view far behind must not stop the records its caught-up views read.
            starts[slot] = max(starts[slot], start)  # a list item under the GIL: no lock
            return read(start, limit)

        return read_from

    def wanted(self, position: int) -> bool:
        """Return whether a reader may still read ``position`` from the tail.

        False when every reader (the furthest of its views) is further behind ``position``
        than the tail holds: the chunks published there would be evicted (least recently used)
        before any reader got to them, and each reader decodes them from the log anyway. The
        writer then builds no records for them (building them was 1.2-1.5% of all samples in
        profiles at 100k+ orders): under a load the views cannot follow (the soak past 200k
        orders) that time goes back to the projector.
        """
        starts = self._next
        return not starts or max(starts) > position - self._max_chunks * CHUNK

    def publish(self, records: Sequence[RecordedEvent]) -> None:
        """Add freshly committed records (consecutive positions, in order): the writer's path."""
        if not records:
            return
        with self._lock:
            self.published += len(records)
            index = 0
            while index < len(records):
                position = records[index].position
                key = (position - 1) // CHUNK
                base = key * CHUNK + 1
                take = min(len(records) - index, base + CHUNK - position)
                chunk = self._chunks.get(key)
                if chunk is None:
                    if position == base:  # a chunk starts here: it is whole from its first record
                        self._chunks[key] = list(records[index : index + take])
                        self._evict()
                elif len(chunk) >= position - base:
                    # Append what the chunk lacks (a reader may have decoded part of it already).
                    known = len(chunk) - (position - base)
                    chunk.extend(records[index + known : index + take])
                # else: a gap before these records; readers decode that chunk from LMDB.
                index += take

    def read(self, start: int, limit: int) -> list[RecordedEvent]:
        """Return up to ``limit`` records from ``start`` on (fewer at a chunk's end or the head).

        Raises:
            CorruptLog: A record from ``start`` on cannot be decoded; ``.position`` names it.
        """
        key = (start - 1) // CHUNK
        base = key * CHUNK + 1
        offset = start - base
        with self._lock:
            tags = self._tags
            chunk = self._chunks.get(key)
            if chunk is not None and len(chunk) > offset:
                self._chunks.move_to_end(key)
                return _slice(chunk, start, offset, limit, tags)
        head = self._store.head()
        if start > head:
            return []
        try:
            decoded = self._decode(base, min(CHUNK, head - base + 1), tags)
        except CorruptLog:
            # A bad record in the chunk: read from `start` alone, so the error (if any) names a
            # position this reader has not passed, and cache nothing.
            return _slice(self._decode(start, limit, tags), start, 0, limit, tags)
        with self._lock:
            self.decoded += len(decoded) - decoded.count(None)
            chunk = self._chunks.get(key)
            if tags == self._tags and (chunk is None or len(chunk) < len(decoded)):
                self._chunks[key] = decoded
                self._evict()
        return _slice(decoded, start, offset, limit, tags)

    def _decode(
        self, base: int, count: int, tags: frozenset[str] | None
    ) -> list[RecordedEvent | None]:
        """Decode ``count`` positions from ``base``: every record, or ``tags``' with gaps."""
        if tags is None:
            return cast("list[RecordedEvent | None]", next(self._store.read_all(base, count), []))
        batch = next(self._store.read_all(base, count, tags=tags), [])
        end = batch.end if isinstance(batch, ReadBatch) else base - 1
        if len(batch) == end - base + 1:
            # Every record wanted (the order views alone want every order event): no gap.
            return cast("list[RecordedEvent | None]", batch)
        sparse: list[RecordedEvent | None] = [None] * (end - base + 1)
        for record in batch:
            sparse[record.position - base] = record
        return sparse

    def _evict(self) -> None:
        while len(self._chunks) > self._max_chunks:
            self._chunks.popitem(last=False)


def _slice(
    chunk: list[RecordedEvent | None],
    start: int,
    offset: int,
    limit: int,
    tags: frozenset[str] | None,
) -> list[RecordedEvent]:
    """Return ``limit`` positions of ``chunk`` from ``offset``: a plain list, or a ReadBatch."""
    part = chunk[offset : offset + limit]
    if tags is None or None not in part:
        return part  # type: ignore[return-value]  # no gap: consecutive records
    records = [record for record in part if record is not None]
    return ReadBatch(records, start + len(part) - 1)
