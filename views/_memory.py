"""The in-memory backend: a read model's tables in plain dicts, guarded by one lock.

Memory views are rebuilt from the log at open (the projector replays them from position 0), so
they trade durability for speed.

Locking: the writer holds the state lock for a whole ``apply`` batch, a reader for one query, so
a query never sees a half-applied event nor iterates a dict being mutated. Python's locks are not
fair (the running thread re-takes a lock before a woken waiter runs), so a tight query loop could
starve the writer; a turnstile fixes that: the writer closes the gate before it waits for the
lock, readers pass the gate first. A query waits for at most one batch: the projector's batch
size bounds query latency under write load.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import structlog

from domain.errors import EngineClosed
from store import RecordedEvent
from views._view import Backend, ReadModel, View, check_query_type, check_up_to

__all__ = ["MemoryView"]

_log = structlog.get_logger(__name__)

V = TypeVar("V")


class _MemoryTable(Generic[V]):
    __slots__ = ("_rows",)

    def __init__(self, rows: dict[str, V]) -> None:
        self._rows = rows

    def get(self, key: str) -> V | None:
        return self._rows.get(key)

    def put(self, key: str, value: V) -> None:
        self._rows[key] = value

    def delete(self, key: str) -> None:
        self._rows.pop(key, None)

    def values(self) -> Iterator[V]:
        return iter(self._rows.values())


class _MemoryIndex:
    __slots__ = ("_groups",)

    def __init__(self) -> None:
        # Sorted (position, value) lists: the projector adds in position order, so `append` is the
        # common case; `insort` keeps the order right if positions ever arrive out of order.
        self._groups: dict[str, list[tuple[int, str]]] = {}

    def add(self, group: str, position: int, value: str) -> None:
        entries = self._groups.setdefault(group, [])
        if not entries or entries[-1][0] < position:
            entries.append((position, value))
        else:
            bisect.insort(entries, (position, value))

    def scan(self, group: str, *, reverse: bool = False) -> Iterator[str]:
        entries = self._groups.get(group, [])
        ordered = reversed(entries) if reverse else iter(entries)
        return (value for _, value in ordered)


class _MemoryState:
    """Everything a memory view holds; `adopt` and `clear` swap the whole object at once."""

    __slots__ = ("_indexes", "_tables", "position")

    def __init__(self) -> None:
        self.position = 0
        self._tables: dict[str, _MemoryTable[Any]] = {}
        self._indexes: dict[str, _MemoryIndex] = {}

    # The state is its own Storage: no wrapper object per event.
    def table(self, name: str, row_type: type[V]) -> _MemoryTable[V]:  # noqa: ARG002 - rows stay objects in memory; the type only matters to LMDB
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = _MemoryTable[Any]({})
        return table

    def index(self, name: str) -> _MemoryIndex:
        index = self._indexes.get(name)
        if index is None:
            index = self._indexes[name] = _MemoryIndex()
        return index


class MemoryView:
    """A read model kept in memory; see :class:`~views.View` for the contract.

    Args:
        model: The read model's logic.
        skip_unknown: Opt-in: the projector skips (and counts) events it cannot decode.
    """

    backend: Backend = "memory"

    def __init__(self, model: ReadModel, *, skip_unknown: bool = False) -> None:
        self.name = model.name
        self.tags = model.tags
        self.query_types = model.query_types
        self.skip_unknown = skip_unknown
        self._model = model
        self._lock = threading.Lock()  # guards _state
        self._gate = threading.Lock()  # the writer's turnstile: readers pass it before _lock
        self._state = _MemoryState()
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryView({self.name!r}, position={self._state.position})"

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(f"view {self.name!r} is closed")

    def position(self) -> int:
        """Return the last position applied (0 = none)."""
        self._check_open()
        return self._state.position

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Apply ``events`` one by one, then move the position to ``up_to``.

        The position advances after each event: if one raises, the position stays at the last
        event fully applied and, as read models compute before they write, nothing of the
        failing event remains.
        """
        self._check_open()
        check_up_to(self.name, events, up_to)
        apply = self._model.apply
        with self._gate, self._lock:
            state = self._state
            position = state.position  # a local in the loop; stored back even if apply raises
            try:
                for record in events:
                    if record.position <= position:
                        continue  # already applied: re-delivery after a retry is harmless
                    apply(state, record)
                    position = record.position
            finally:
                state.position = position
            state.position = max(position, up_to)

    def reapply(self, event: RecordedEvent) -> None:
        """Apply one (parked) event without moving the position."""
        self._check_open()
        with self._gate, self._lock:
            self._model.apply(self._state, event)

    def query(self, query: object) -> object:
        """Answer ``query`` from a consistent state (no half-applied event)."""
        self._check_open()
        check_query_type(self, query)
        with self._gate:
            pass  # closed while the writer waits: a query loop cannot starve it
        with self._lock:
            return self._model.query(self._state, query)

    def new_shadow(self) -> MemoryView:
        """Return an empty, independent copy (own lock, own state) to rebuild into."""
        self._check_open()
        return MemoryView(self._model, skip_unknown=self.skip_unknown)

    def adopt(self, shadow: View) -> None:
        """Take over ``shadow``'s state in one reference swap; the shadow is closed."""
        self._check_open()
        if not isinstance(shadow, MemoryView) or shadow.name != self.name or shadow is self:
            raise TypeError(f"view {self.name!r} can only adopt its own memory shadow")
        state = shadow.hand_over()
        with self._gate, self._lock:
            self._state = state
        _log.info("view_adopted", view=self.name, backend=self.backend, position=state.position)

    def hand_over(self) -> _MemoryState:
        """Close this view and return its state; :meth:`adopt` calls it on the shadow."""
        with self._gate, self._lock:  # waits for an apply or query in progress on the shadow
            self._check_open()
            state, self._state = self._state, _MemoryState()
            self._closed = True
        return state

    def clear(self) -> None:
        """Drop every row; the position goes back to 0."""
        self._check_open()
        with self._gate, self._lock:
            self._state = _MemoryState()
        _log.info("view_cleared", view=self.name, backend=self.backend)

    def close(self) -> None:
        """Release the rows; later calls raise EngineClosed. Idempotent."""
        with self._gate, self._lock:
            self._closed = True
            self._state = _MemoryState()
