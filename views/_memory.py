"""The in-memory backend: a read model's tables in plain dicts, guarded by one lock.

Memory views are rebuilt from the log at open, so they trade durability for speed; a snapshot
(:meth:`MemoryView.snapshot`, framed by ``views._snapshot_file``) lets an open load the state at a
position and replay only the tail (:meth:`MemoryView.restore`). A restored table's rows stay
raw msgpack until the read model first asks for the table: only then is its row type known.

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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from domain.errors import EngineClosed
from store import RecordedEvent, get_logger
from views._chunked import Parts
from views._memory_codec import (
    IndexEntries,
    TableRows,
    decode_row,
    decode_rows,
    decode_state,
    encode_state,
)
from views._snapshot_file import decode_snapshot, frame_snapshot
from views._view import (
    Backend,
    ReadModel,
    View,
    check_query,
    check_up_to,
    model_version,
    row_decoder,
    row_fold_of,
    row_writer,
)

__all__ = ["MemoryView"]

_log = get_logger(__name__)

V = TypeVar("V")


class _MemoryTable(Generic[V]):
    """A table's rows; those of a restored snapshot stay encoded until read (see decode_rows)."""

    __slots__ = ("_decoder", "_encoded", "_names", "row_type", "rows")

    def __init__(
        self,
        rows: dict[str, Any],
        row_type: type[V],
        *,
        encoded: bool = False,
        names: tuple[str, str] = ("", ""),
    ) -> None:
        self.rows = rows  # values: V, or msgspec.Raw while a restored row is not read yet
        self.row_type = row_type  # as first asked for: what a restored snapshot decodes with
        self._encoded = encoded  # whether rows may still hold a msgspec.Raw
        self._decoder = row_decoder(row_type)
        self._names = names  # (view, table): for the error of a row that does not decode

    def get(self, key: str) -> V | None:
        row = self.rows.get(key)
        if self._encoded and type(row) is msgspec.Raw:
            row = self.rows[key] = self._decode(row)
        return row

    def _decode(self, raw: msgspec.Raw) -> V:
        return decode_row(*self._names, raw, self._decoder)

    def put(self, key: str, value: V) -> None:
        self.rows[key] = value

    def delete(self, key: str) -> None:
        self.rows.pop(key, None)

    def values(self) -> Iterator[V]:
        if self._encoded:  # a scan reads every row: decode the rest once
            rows = self.rows
            for key, row in rows.items():
                if type(row) is msgspec.Raw:
                    rows[key] = self._decode(row)
            self._encoded = False
        return iter(self.rows.values())


class _MemoryIndex:
    __slots__ = ("groups",)

    def __init__(self, groups: IndexEntries | None = None) -> None:
        # Sorted (position, value) lists: the projector adds in position order, so `append` is the
        # common case; `insort` keeps the order right if positions ever arrive out of order.
        self.groups: IndexEntries = {} if groups is None else groups

    def add(self, group: str, position: int, value: str) -> None:
        entries = self.groups.setdefault(group, [])
        if not entries or entries[-1][0] < position:
            entries.append((position, value))
        else:
            bisect.insort(entries, (position, value))

    def scan(self, group: str, *, reverse: bool = False) -> Iterator[str]:
        entries = self.groups.get(group, [])
        ordered = reversed(entries) if reverse else iter(entries)
        return (value for _, value in ordered)


class _MemoryState:
    """Everything a memory view holds; `adopt` and `clear` swap the whole object at once.

    ``_pending`` holds the tables of a restored snapshot that the read model has not asked for
    yet, as raw msgpack: :meth:`table` decodes one with the row type it is asked for.
    """

    __slots__ = ("_indexes", "_pending", "_tables", "_view", "position")

    def __init__(
        self,
        view: str = "",
        position: int = 0,
        pending: dict[str, msgspec.Raw] | None = None,
        indexes: dict[str, IndexEntries] | None = None,
    ) -> None:
        self.position = position
        self._view = view
        self._tables: dict[str, _MemoryTable[Any]] = {}
        self._pending = pending or {}
        self._indexes = {name: _MemoryIndex(groups) for name, groups in (indexes or {}).items()}

    # The state is its own Storage: no wrapper object per event.
    def table(self, name: str, row_type: type[V]) -> _MemoryTable[V]:
        table = self._tables.get(name)
        if table is None:
            raw = self._pending.get(name)
            # Raises SnapshotRowsError (the table stays pending, so every later use raises too).
            rows = {} if raw is None else decode_rows(self._view, name, raw, row_type)
            table = self._tables[name] = _MemoryTable(
                rows, row_type, encoded=raw is not None, names=(self._view, name)
            )
            self._pending.pop(name, None)
        return table

    def is_empty(self) -> bool:
        """Return True if nothing was ever applied or restored (position 0, no rows)."""
        return not (
            self.position
            or self._pending
            or any(table.rows for table in self._tables.values())
            or any(index.groups for index in self._indexes.values())
        )

    def copy(self) -> tuple[int, dict[str, TableRows], dict[str, IndexEntries]]:
        """Return (position, tables, indexes): a copy that later applies cannot change.

        Shallow: rows are immutable, so copying the dicts and the index lists (which are
        appended to) is enough, and costs about one pointer copy per row.
        """
        tables: dict[str, TableRows] = dict(self._pending)  # Raw bytes are immutable
        for name, table in self._tables.items():
            tables[name] = table.rows.copy()
        indexes = {
            name: {group: entries.copy() for group, entries in index.groups.items()}
            for name, index in self._indexes.items()
        }
        return self.position, tables, indexes

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
        # A read model may ask for a projector of its own (see ReadModel): slow applies of it
        # then never hold the other views back.
        self.isolated = bool(getattr(model, "isolated", False))
        self.row_fold = row_fold_of(model)
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

    def load_rows(self, rows: Iterable[Any], up_to: int) -> None:
        """Write rows folded by a rebuild's :attr:`row_fold`, then move the position to ``up_to``.

        Raises:
            TypeError: The read model has no ``row_fold``.
        """
        self._check_open()
        apply_row = row_writer(self.name, self._model)
        with self._gate, self._lock:
            state = self._state
            for row in rows:
                apply_row(state, row)
            state.position = max(state.position, up_to)

    def validate(self, query: object) -> None:
        """Raise InvalidQuery if this view does not answer ``query`` or its read model refuses it.

        Reads no row: the engine calls it before it asks (or parks) a query.
        """
        check_query(self, self._model, query)

    def query(self, query: object) -> object:
        """Answer ``query`` from a consistent state (no half-applied event)."""
        self._check_open()
        check_query(self, self._model, query)
        with self._gate:
            pass  # closed while the writer waits: a query loop cannot starve it
        with self._lock:
            return self._model.query(self._state, query)

    @property
    def model_version(self) -> int:
        """The read model's ``version``, 1 if it declares none.

        A snapshot is only restored by the same version, so a read model bumps its version
        whenever the shape of its rows changes.

        Raises:
            TypeError: The read model's ``version`` is not an int.
        """
        return model_version(self._model)

    def snapshot(self) -> tuple[int, bytes]:
        """Return ``(position, snapshot)``: :meth:`snapshot_parts` joined into one bytes."""
        position, parts = self.snapshot_parts()
        return position, b"".join(parts)

    def snapshot_parts(self) -> tuple[int, Parts]:
        """Return ``(position, parts)``: the state at ``position``, framed for the file, in parts.

        The lock is held only to copy the state (shallowly: rows are immutable); encoding runs
        after, a slice at a time, so applies and queries wait for the copy alone (see the
        module's notes and :mod:`views._chunked`).

        Raises:
            EngineClosed: The view is closed.
            TypeError: A row is not msgspec-encodable.
        """
        self._check_open()
        version = self.model_version
        with self._gate:
            pass  # a reader, like a query: it must not starve the writer
        with self._lock:
            self._check_open()  # a close swaps in an empty state: never snapshot that one
            position, tables, indexes = self._state.copy()
        payload = encode_state(tables, indexes)
        return position, frame_snapshot(self.name, version, position, payload)

    def restore(self, data: bytes) -> int | None:
        """Load a snapshot of this view into this empty view; return its position.

        Anything wrong with ``data`` (another view or model version, a torn or corrupted file,
        an unreadable payload) returns None, logged, and leaves the view empty at position 0:
        the caller then replays from the start. A restored table is split into its rows when
        the read model first asks for it, and each row decoded when first read (see
        :func:`~views._memory_codec.decode_rows`); if the first row, or a row read later, does
        not decode as the type asked for, that apply or query raises
        :class:`~views._memory_codec.SnapshotRowsError`.

        Raises:
            ValueError: The view is not empty at position 0.
            EngineClosed: The view is closed.
        """
        self._check_open()
        self._check_empty()  # fail fast, before decoding anything
        version = self.model_version
        framed = decode_snapshot(data, self.name, version)
        if framed is None:
            return None  # decode_snapshot logged why
        position, payload = framed
        try:
            tables, indexes = decode_state(payload)
        except msgspec.DecodeError as error:  # a checksummed payload that is not ours
            _log.warning("view_snapshot_discarded", view=self.name, reason=f"payload: {error}")
            return None
        if position < 0:
            _log.warning("view_snapshot_discarded", view=self.name, reason=f"position {position}")
            return None
        state = _MemoryState(self.name, position, tables, indexes)
        with self._gate, self._lock:
            self._check_open()
            self._check_empty()  # nothing may have been applied while we decoded
            self._state = state
        _log.info("view_restored", view=self.name, backend=self.backend, position=position)
        return position

    def _check_empty(self) -> None:
        if not self._state.is_empty():
            raise ValueError(
                f"view {self.name!r} is at position {self._state.position} with rows: "
                "restore a snapshot only into an empty view (clear it first)"
            )

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
