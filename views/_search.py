"""``order_search`` as its own view: SearchOrders answered from indexes, not a scan of every row.

The generic :class:`~views.MemoryView` over :class:`~views._order_models.OrderSearchModel` tests
every row per query (~14 ms at 25k orders, ~100 ms at 100k) while holding the view's lock. This
view keeps the same rows in a :class:`~views._search_index.SearchIndex` and answers from sorted
orderings and a trigram index over the distinct ids (see that module).

Locking: one lock guards the index, with the writer's turnstile of :class:`MemoryView` (Python's
locks are unfair; the gate keeps a query loop from starving the projector). A query holds the
lock only to *plan*: catch the orderings up, then either pick the page (walks bounded by a
constant times the page, or by the number of hits) or copy the hits' rows into a list. Rows are
immutable, so ordering a large list of hits (the costly part of a broad query) happens after
the lock is released, and the applier runs meanwhile. The applier takes the lock per chunk of
events, so a query waits for at most one chunk of a large replay batch, never a whole batch;
and each event is folded whole under it, so no query sees a half-applied event.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from domain.errors import EngineClosed
from store import RecordedEvent, get_logger
from views._chunked import Parts
from views._order_fold import ORDER_FOLD
from views._order_rows import ORDER_TAGS, OrderRow
from views._order_types import OrderView, Page, SearchOrders, validate_query
from views._search_index import SearchIndex
from views._search_payload import decode_payload, encode_payload
from views._search_plan import finish
from views._search_texts import build_owners
from views._snapshot_file import decode_snapshot, frame_snapshot
from views._view import Backend, RowFold, View, check_query_type, check_up_to

__all__ = ["SearchView"]

_log = get_logger(__name__)

_CHUNK: Final = 256  # events folded per hold of the lock: a query waits for one chunk at most
# After an apply, the writer syncs the orderings itself when few orders changed (live traffic),
# so queries seldom pay for it; a large backlog (a replay) is left for one re-sort at the next
# query instead of ~8 sorted-list updates per event.
_EAGER_SYNC: Final = 512
# 2: order lines keep their price as text (RowLine); 3: flat rows; 4: trigram postings only;
# 5: each distinct line stored once (views._search_payload). Versions 3 and 4 are still read (a
# version 3's shorter postings are dropped at load); a reader of version 3 must discard a
# version 4 one, whose short needles it would find nowhere, and one of 4 a version 5 one.
_MODEL_VERSION: Final = 5
_READS_ALSO: Final = (3, 4)
_OWNERS_IN_BACKGROUND: Final = True  # tests turn it off to drive the query path's build
_SCANS_BEFORE_BUILD: Final = 3  # searches by id part answered by a scan before the build starts


class SearchView:
    """The ``order_search`` view, in memory, answering :class:`SearchOrders` from indexes.

    See :class:`~views.View` for the contract; answers equal those of
    ``MemoryView(OrderSearchModel())``.

    Args:
        name: The view's name (its checkpoint and snapshot key).
        skip_unknown: Opt-in: the projector skips (and counts) events it cannot decode.
    """

    backend: Backend = "memory"
    query_types: tuple[type, ...] = (SearchOrders,)

    def __init__(self, name: str = "order_search", *, skip_unknown: bool = False) -> None:
        self.name = name
        self.tags: frozenset[str] | None = ORDER_TAGS
        self.row_fold: RowFold | None = ORDER_FOLD  # a rebuild folds the rows, then loads them
        self.skip_unknown = skip_unknown
        self._lock = threading.Lock()  # guards _index and _position
        self._owners_for: SearchIndex | None = None  # the index whose owners build started
        self._gate = threading.Lock()  # the writer's turnstile: readers pass it before _lock
        self._index = SearchIndex()
        self._position = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"SearchView({self.name!r}, position={self._position})"

    @property
    def model_version(self) -> int:
        """The version of what :meth:`snapshot` writes; a snapshot of another one is discarded."""
        return _MODEL_VERSION

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(f"view {self.name!r} is closed")

    def position(self) -> int:
        """Return the last position applied (0 = none)."""
        self._check_open()
        return self._position

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Apply ``events`` one by one, then move the position to ``up_to``.

        Events at or below the position are ignored. The position advances after each event:
        if one raises, it stays at the last event fully applied and nothing of the failing
        event remains (the model computes before it writes).
        """
        self._check_open()
        check_up_to(self.name, events, up_to)
        for first in range(0, len(events), _CHUNK):
            with self._gate, self._lock:
                self._check_open()
                index = self._index
                position = self._position
                try:
                    for record in events[first : first + _CHUNK]:
                        if record.position <= position:
                            continue  # already applied: re-delivery after a retry is harmless
                        index.fold(record)
                        position = record.position
                finally:
                    self._position = position
        with self._gate, self._lock:
            self._check_open()
            self._position = max(self._position, up_to)
            if self._index.dirty <= _EAGER_SYNC:
                self._index.sync()

    def reapply(self, event: RecordedEvent) -> None:
        """Apply one (parked) event without moving the position."""
        self._check_open()
        with self._gate, self._lock:
            self._index.fold(event)

    def load_rows(self, rows: Iterable[OrderRow], up_to: int) -> None:
        """Put rows folded by a rebuild's :attr:`row_fold`, then move the position to ``up_to``.

        The orderings are synced here, on the rebuild's thread, not by the first query.
        """
        self._check_open()
        with self._gate, self._lock:
            self._check_open()
            index = self._index
            for row in rows:
                index.put_row(row)
            index.sync()
            self._position = max(self._position, up_to)

    def query(self, query: object) -> Page[OrderView]:
        """Answer a :class:`SearchOrders` from a consistent state (no half-applied event).

        Raises:
            InvalidQuery: ``query`` is not a valid :class:`SearchOrders`.
        """
        self._check_open()
        check_query_type(self, query)
        validate_query(query)
        if not isinstance(query, SearchOrders):  # pragma: no cover - check_query_type said so
            raise TypeError(f"unexpected query {type(query).__name__}")
        with self._gate:
            pass  # closed while the writer waits: a query loop cannot starve it
        with self._lock:
            self._check_open()
            index = self._index
            index.sync()
            plan = index.plan(query)
            build = (
                index.owners_pending
                and index.scans >= _SCANS_BEFORE_BUILD
                and self._owners_for is not index
            )
            if build:
                self._owners_for = index
        if build and _OWNERS_IN_BACKGROUND:
            # Searches by id part since a restore were answered by scans; the owners of the id
            # texts (most of a restore's cost, ~0.5 s at 1M events) are now built off the lock,
            # so the next ones use the index. Not at restore, nor at the first search: the
            # build would compete for the GIL with the engine's open and its first queries.
            threading.Thread(
                target=self._build_owners, args=(index,), name=f"{self.name}-owners", daemon=True
            ).start()
        # Rows are immutable: ordering the hits needs no lock (the applier runs meanwhile).
        return finish(query, plan)

    def new_shadow(self) -> SearchView:
        """Return an empty, independent copy (own lock, own index) to rebuild into."""
        self._check_open()
        return SearchView(self.name, skip_unknown=self.skip_unknown)

    def adopt(self, shadow: View) -> None:
        """Take over ``shadow``'s index and position in one swap; the shadow is closed."""
        self._check_open()
        if not isinstance(shadow, SearchView) or shadow.name != self.name or shadow is self:
            raise TypeError(f"view {self.name!r} can only adopt its own search shadow")
        index, position = shadow.hand_over()
        with self._gate, self._lock:
            self._index, self._position = index, position
        _log.info("view_adopted", view=self.name, backend=self.backend, position=position)

    def hand_over(self) -> tuple[SearchIndex, int]:
        """Close this view and return its index and position; :meth:`adopt` calls it."""
        with self._gate, self._lock:  # waits for an apply or query in progress on the shadow
            self._check_open()
            handed = self._index, self._position
            self._index, self._position = SearchIndex(), 0
            self._closed = True
        return handed

    def _build_owners(self, index: SearchIndex) -> None:
        try:
            with self._lock:
                if self._index is not index or not index.owners_pending:
                    return
                copied, text_ids, texts = index.begin_owners()
            owners = build_owners(copied, text_ids, texts)
            with self._gate, self._lock:
                if self._index is index:
                    index.install_owners(owners, copied)
        except Exception:  # noqa: BLE001 - searches by id part scan; the query path builds later
            _log.exception("search_owners_build_failed", view=self.name)

    def clear(self) -> None:
        """Drop every row; the position goes back to 0."""
        self._check_open()
        with self._gate, self._lock:
            self._index, self._position = SearchIndex(), 0
        _log.info("view_cleared", view=self.name, backend=self.backend)

    def close(self) -> None:
        """Release the rows; later calls raise EngineClosed. Idempotent."""
        with self._gate, self._lock:
            self._closed = True
            self._index, self._position = SearchIndex(), 0

    def snapshot(self) -> tuple[int, bytes]:
        """Return ``(position, framed bytes)`` of the current state, for :meth:`restore`."""
        position, parts = self.snapshot_parts()
        return position, b"".join(parts)

    def snapshot_parts(self) -> tuple[int, Parts]:
        """Return ``(position, parts)``: :meth:`snapshot`'s bytes in parts, never joined.

        The lock is held only to copy the row references and texts; encoding runs outside it,
        the rows a slice at a time (see :mod:`views._chunked`).
        """
        self._check_open()
        with self._gate, self._lock:
            position = self._position
            rows, texts, grams = self._index.export()
        payload = encode_payload(rows, texts, grams)
        return position, frame_snapshot(self.name, _MODEL_VERSION, position, payload)

    def restore(self, data: bytes) -> int | None:
        """Load a :meth:`snapshot` into this empty view; return its position.

        Returns None, leaving the view empty, if ``data`` is not a whole snapshot of this view
        and of its model version or version 3 (it is then discarded: the projector replays
        from 0).

        Raises:
            ValueError: The view is not empty (rows or a position above 0).
        """
        self._check_open()
        with self._lock:
            if self._position or len(self._index):
                raise ValueError(f"view {self.name!r}: restore needs an empty view at position 0")
        found = decode_snapshot(data, self.name, _MODEL_VERSION, older=_READS_ALSO)
        if found is None:
            return None
        position, raw = found
        # Building ~100k sets over millions of fresh objects would trigger full collections
        # that find nothing to free (3x slower restore): pause the collector meanwhile.
        paused = gc.isenabled()
        gc.disable()
        try:
            index = SearchIndex.load(*decode_payload(raw))
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            _log.warning("view_snapshot_discarded", view=self.name, reason=str(error))
            return None
        finally:
            if paused:
                gc.enable()
        with self._gate, self._lock:
            self._check_open()
            if self._position or len(self._index):
                raise ValueError(f"view {self.name!r}: restore needs an empty view at position 0")
            self._index, self._position = index, position

        _log.info("view_restored", view=self.name, position=position, orders=len(index))
        return position
