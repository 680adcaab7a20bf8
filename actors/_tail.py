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
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

from domain.errors import CorruptLog
from store import ProjectionLog, RecordedEvent

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
        self._chunks: OrderedDict[int, list[RecordedEvent]] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0  # records decoded from LMDB (misses), for tests and the bench
        self.published = 0  # records handed over by the writer
        self.readers = 0  # projectors and sagas reading it: none, and the writer publishes nothing

    def reader(self) -> Callable[[int, int], list[RecordedEvent]]:
        """Register a reader (a projector, a saga) and return its :meth:`read`.

        The writer hands records over only while someone reads them: in projection-process
        mode every view may live in the child, and building records nobody reads would cost
        the engine's process ~1-2 us per event for nothing. A reader registered later finds
        what it lacks by decoding (a miss), as after any gap.
        """
        with self._lock:
            self.readers += 1
        return self.read

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
            chunk = self._chunks.get(key)
            if chunk is not None and len(chunk) > offset:
                self._chunks.move_to_end(key)
                return chunk[offset : offset + limit]
        head = self._store.head()
        if start > head:
            return []
        try:
            decoded = next(self._store.read_all(base, min(CHUNK, head - base + 1)), [])
        except CorruptLog:
            # A bad record in the chunk: read from `start` alone, so the error (if any) names a
            # position this reader has not passed, and cache nothing.
            return next(self._store.read_all(start, limit), [])
        with self._lock:
            self.decoded += len(decoded)
            chunk = self._chunks.get(key)
            if chunk is None or len(chunk) < len(decoded):
                self._chunks[key] = decoded
                self._evict()
        return decoded[offset : offset + limit]

    def _evict(self) -> None:
        while len(self._chunks) > self._max_chunks:
            self._chunks.popitem(last=False)
