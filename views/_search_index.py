"""The search index: order rows plus the structures that answer SearchOrders without a scan.

Rows are folded by :class:`~views._order_models.OrderSearchModel` itself (through a one-table
storage adapter), so they are identical to the generic view's, search text included. Beside them:

- **Id texts** (:class:`~views._search_texts.IdTexts`): every distinct casefolded id numbered
  once, its trigram postings, and per text the orders that own it; a needle's hits are the union
  of its matching texts' owners.
- **Orderings.** Per status and over all orders, ``SortedList`` s of ``(key, position, order
  id)`` for each sort field; the position breaks ties exactly as the contract says. Keeping
  them exact on every event would cost ~8 sorted-list updates per added item (~20 us), more
  than the rest of the fold, and a replay would pay it 2M times: orders are marked *dirty*
  instead, and :meth:`SearchIndex.sync` catches the orderings up in one go (incrementally, or
  by one sort when many orders changed, as after a replay). Readers must sync first.
- **Per status**, the set of its order ids (a needle's hits are intersected with it in C).

A query is planned by :meth:`SearchIndex.plan` (reads only, fast, under the caller's lock) and
finished by :func:`~views._search_plan.finish` (sorting hits, possibly many, on immutable rows:
no lock needed).
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from operator import itemgetter
from typing import Any, Final, TypeVar, cast

# sortedcontainers ships no type information; its SortedList is used through a few typed helpers.
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from store import RecordedEvent
from views._order_models import OrderSearchModel
from views._order_rows import ORDER_EVENTS, OrderRow
from views._order_types import STATUSES, SearchOrders
from views._search_owners import Owners, owner_count, union
from views._search_plan import Plan
from views._search_texts import IdTexts
from views._view import Index, Table

__all__ = ["SearchIndex"]

_WALK_BUDGET: Final = 4  # a walk may visit this many entries per candidate before it gives up
_SCAN_FACTOR: Final = 4  # a needle whose owners sum past this many times the orders scans
_FULL_SYNC_SHIFT: Final = 3  # more than 1/8 of the orders dirty: re-sort rather than update
_FULL_SYNC_MIN: Final = 4096
_OWNERS_AFTER_SCANS: Final = 64  # restored: scans before the query path builds the owners
_SCALE: Final = 6  # totals are sorted as integers of millionths when that is exact
# An exact context: scaleb() must never round (a 40-digit bound from a query included).
_EXACT: Final = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_PLUS: Final = Decimal("Infinity")
_MINUS: Final = Decimal("-Infinity")

V = TypeVar("V")
SortKey = Any  # int, or a Decimal when a total has more than _SCALE places
Entry = tuple[SortKey, int, str]  # (sort key, creating position, order id)
_Group = str | None  # a status, or None for every order


def _scaled(total: Decimal) -> SortKey:
    # Integers compare several times faster than Decimals; int and Decimal compare exactly with
    # each other, so a total with more places than _SCALE simply stays a Decimal in the list.
    scaled = total.scaleb(_SCALE, _EXACT)
    return int(scaled) if scaled == scaled.to_integral_value(context=_EXACT) else scaled


def _entries(row: OrderRow) -> tuple[str, Entry, Entry, Entry]:
    """Return the row's status and its (created, total, count) ordering entries."""
    position = row.position
    order_id = row.order_id
    return (
        row.status,
        (row.created_us, position, order_id),
        (_scaled(row.total_amount), position, order_id),
        (row.item_count, position, order_id),
    )


class _RowsStorage:
    """The one-table Storage that lets :class:`OrderSearchModel` fold into our rows dict."""

    __slots__ = ("_rows",)

    def __init__(self, rows: dict[str, OrderRow]) -> None:
        self._rows = rows

    def table(self, name: str, row_type: type[V]) -> Table[V]:  # noqa: ARG002 - the model has one table, of OrderRows
        return cast("Table[V]", self)

    def index(self, name: str) -> Index:
        raise NotImplementedError(f"the search model uses no index ({name!r})")

    def get(self, key: str) -> OrderRow | None:
        return self._rows.get(key)

    def put(self, key: str, value: OrderRow) -> None:
        self._rows[key] = value

    def delete(self, key: str) -> None:
        self._rows.pop(key, None)

    def values(self) -> Iterator[OrderRow]:
        return iter(self._rows.values())


def _page_slice(ordering: Any, low: int, high: int, start: int, stop: int, *, desc: bool) -> Any:
    """Entries ``start:stop`` of ``ordering[low:high]`` read in the query's direction."""
    if desc:
        return ordering.islice(max(low, high - stop), max(low, high - start), reverse=True)
    return ordering.islice(min(high, low + start), min(high, low + stop))


def _walk(entries: Iterator[Entry], accept: Callable[[str], bool], stop: int) -> list[str]:
    """Return the ids of the first ``stop`` accepted entries (fewer if ``entries`` ends)."""
    return list(itertools.islice(filter(accept, (entry[2] for entry in entries)), stop))


class SearchIndex:
    """Order rows and their search structures; single-threaded (the view adds the locking).

    Writers call :meth:`fold` per event; readers call :meth:`sync` then :meth:`plan`.
    """

    def __init__(self) -> None:
        self.rows: dict[str, OrderRow] = {}
        self._model = OrderSearchModel()
        self._storage = _RowsStorage(self.rows)
        # Its owners are None after a restore until needle searches need them (_plan_needle).
        self._ids = IdTexts()
        self._scans = 0  # needle searches answered by a scan while the owners are not built
        self._by_status: dict[str, set[str]] = {status: set() for status in STATUSES}
        self._groups: tuple[_Group, ...] = (None, *STATUSES)
        self._orderings: dict[tuple[_Group, str], Any] = {}
        self._indexed: dict[str, tuple[str, Entry, Entry, Entry]] = {}
        self._dirty: set[str] = set()
        self._rebuild_orderings()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def dirty(self) -> int:
        """How many orders changed since the orderings were last synced."""
        return len(self._dirty)

    # ------------------------------------------------------------ writing

    def fold(self, record: RecordedEvent) -> None:
        """Fold one event in; if it raises (a poison event), nothing of it remains.

        Raises:
            ValueError: The log is inconsistent (see :func:`~views._order_rows.evolve`).
        """
        event = record.event
        if not isinstance(event, ORDER_EVENTS):
            return
        order_id = event.order_id
        old = self.rows.get(order_id)
        # The model computes first and writes last: if it raises, the rows are untouched, and
        # nothing below runs.
        self._model.apply(self._storage, record)
        self._indexed_row(order_id, old)

    def put_row(self, row: OrderRow) -> None:
        """Put an order's row folded by a rebuild (see :class:`~views._view.RowFold`)."""
        order_id = row.order_id
        old = self.rows.get(order_id)
        self._model.apply_row(self._storage, row)  # gives it its search text
        self._indexed_row(order_id, old)

    def _indexed_row(self, order_id: str, old: OrderRow | None) -> None:
        """Index the order's new row (``old`` before it) by its texts and status."""
        new = self.rows[order_id]
        self._ids.index_row(order_id, old, new)
        status = new.status
        if old is None:
            self._by_status[status].add(order_id)
        elif old.status != status:
            self._by_status[old.status].discard(order_id)
            self._by_status[status].add(order_id)
        self._dirty.add(order_id)

    def sync(self) -> None:
        """Bring the orderings up to date with the rows."""
        dirty = self._dirty
        if not dirty:
            return
        if len(dirty) > max(_FULL_SYNC_MIN, len(self.rows) >> _FULL_SYNC_SHIFT):
            self._rebuild_orderings()
            return
        orderings, indexed, rows = self._orderings, self._indexed, self.rows
        for order_id in dirty:
            new = _entries(rows[order_id])
            old = indexed.get(order_id)
            indexed[order_id] = new
            status = new[0]
            for field, slot in (("created_at", 1), ("total_amount", 2), ("item_count", 3)):
                entry = new[slot]
                if old is None:
                    orderings[None, field].add(entry)
                    orderings[status, field].add(entry)
                    continue
                previous = old[slot]
                if previous != entry:
                    orderings[None, field].remove(previous)
                    orderings[None, field].add(entry)
                if previous != entry or old[0] != status:
                    orderings[old[0], field].remove(previous)
                    orderings[status, field].add(entry)
        dirty.clear()

    def _rebuild_orderings(self) -> None:
        indexed = {order_id: _entries(row) for order_id, row in self.rows.items()}
        values = list(indexed.values())
        status_of = {order_id: entry[0] for order_id, entry in indexed.items()}
        for field, slot in (("created_at", 1), ("total_amount", 2), ("item_count", 3)):
            everything: list[Entry] = sorted(map(itemgetter(slot), values))
            self._orderings[None, field] = SortedList(everything)
            # One pass deals the sorted entries out by status, each bucket staying sorted
            # (SortedList's own sort then runs linear); a filter per status read every entry
            # once per status (0.26 s of a 1M-event reopen at 50k orders).
            buckets: dict[str, list[Entry]] = {status: [] for status in STATUSES}
            for entry in everything:
                buckets[status_of[entry[2]]].append(entry)
            for status, entries in buckets.items():
                self._orderings[status, field] = SortedList(entries)
        self._indexed = indexed
        self._dirty.clear()

    # ------------------------------------------------------------ reading

    def plan(self, query: SearchOrders) -> Plan:
        """Find ``query``'s page, or the few rows to order for it. Call :meth:`sync` first.

        The work done here is bounded by the page (walks) or by the number of hits (copied
        for :func:`finish`); only a needle whose texts are shared by most orders falls back to
        handing every row over, and :func:`finish` then filters them (the old scan).
        """
        if self._dirty:
            raise RuntimeError("SearchIndex.plan() needs sync() first")
        group: _Group = query.status
        ordering = self._orderings[group, query.sort_by]
        totals = self._orderings[group, "total_amount"]
        desc = query.sort_order == "desc"
        start = (query.page - 1) * query.page_size
        stop = start + query.page_size
        ranged = query.min_total is not None or query.max_total is not None
        low_i, high_i = 0, len(totals)
        if query.min_total is not None:
            low_i = totals.bisect_left((Decimal(query.min_total).scaleb(_SCALE, _EXACT),))
        if query.max_total is not None:
            bound = Decimal(query.max_total).scaleb(_SCALE, _EXACT)
            high_i = totals.bisect_right((bound, _PLUS))
        in_range = max(0, high_i - low_i)
        needle = query.query.casefold()
        if needle:
            return self._plan_needle(query, needle, (low_i, high_i) if ranged else None)
        if query.sort_by == "total_amount" or not ranged:
            # The ordering itself is the answer: jump to the page by index.
            low, high = (low_i, high_i) if ranged else (0, len(ordering))
            entries = _page_slice(ordering, low, high, start, stop, desc=desc)
            return self._page([entry[2] for entry in entries], max(0, high - low))
        # Range on totals, sorted by another field: walk that ordering while it is cheaper
        # than sorting the range.
        if in_range and stop * len(ordering) <= in_range * in_range:
            rows = self.rows
            floor = _MINUS if query.min_total is None else query.min_total
            ceiling = _PLUS if query.max_total is None else query.max_total

            def accept(order_id: str) -> bool:
                return floor <= rows[order_id].total_amount <= ceiling

            found = self._bounded_walk(ordering, desc, accept, stop, in_range)
            if found is not None:
                return self._page(found[start:], in_range)
        rows = self.rows
        hits = [rows[entry[2]] for entry in totals.islice(low_i, high_i)]
        return Plan(items=None, total=len(hits), rows=hits)

    def _plan_needle(self, query: SearchOrders, needle: str, span: tuple[int, int] | None) -> Plan:
        owners = self._ids.owners
        if owners is None:
            self._scans += 1
            if self._scans < _OWNERS_AFTER_SCANS:
                # Just restored: a scan answers now; owners are built once searches by id part
                # prove frequent, and then pay for themselves.
                return Plan(items=None, total=-1, rows=list(self.rows.values()))
            owners = self._ids.build(self.rows)
        texts = self._ids.matching(needle)
        shared = sum(owner_count(owners[number]) for number in texts)
        if shared > _SCAN_FACTOR * len(self.rows):
            # The texts are shared by most orders (a needle like "sku"): a union would cost more
            # than testing every row once. Hand every row over; finish() filters them.
            return Plan(items=None, total=-1, rows=list(self.rows.values()))
        hits = union(owners, texts)
        if query.status is not None:
            hits.intersection_update(self._by_status[query.status])
        if span is not None:
            low_i, high_i = span
            totals = self._orderings[query.status, "total_amount"]
            if high_i - low_i < len(hits):
                hits.intersection_update([entry[2] for entry in totals.islice(low_i, high_i)])
            else:
                rows = self.rows
                floor = _MINUS if query.min_total is None else query.min_total
                ceiling = _PLUS if query.max_total is None else query.max_total
                hits = {o for o in hits if floor <= rows[o].total_amount <= ceiling}
        count = len(hits)
        start = (query.page - 1) * query.page_size
        stop = start + query.page_size
        if not count or start >= count:
            return Plan(items=[], total=count)
        ordering = self._orderings[query.status, query.sort_by]
        if stop * len(ordering) <= count * count:
            # Dense hits: walking the ordering meets the page's hits soon.
            found = self._bounded_walk(
                ordering, query.sort_order == "desc", hits.__contains__, stop, count
            )
            if found is not None:
                return self._page(found[start:], count)
        rows = self.rows
        return Plan(items=None, total=count, rows=[rows[order_id] for order_id in hits])

    def _bounded_walk(
        self, ordering: Any, desc: bool, accept: Callable[[str], bool], stop: int, hits: int
    ) -> list[str] | None:
        """Walk for ``stop`` accepted ids; None if that took over ``_WALK_BUDGET * hits`` steps.

        The budget keeps a walk within a constant factor of sorting the hits, however the hits
        are placed in the ordering (say, all at its far end).
        """
        budget = _WALK_BUDGET * hits
        visited = itertools.count()
        steps = itertools.islice(ordering.islice(reverse=desc), budget)
        found = _walk(_counted(steps, visited), accept, stop)
        if len(found) < stop and next(visited) >= budget and budget < len(ordering):
            return None
        return found

    def _page(self, order_ids: Iterable[str], total: int) -> Plan:
        rows = self.rows
        return Plan(items=[rows[order_id].view() for order_id in order_ids], total=total)

    @property
    def scans(self) -> int:
        """Searches by id part answered by a scan since the restore (owners not built)."""
        return self._scans

    @property
    def owners_pending(self) -> bool:
        """Whether the owners of the texts are still to be built (after a restore)."""
        return self._ids.owners is None

    def begin_owners(self) -> tuple[list[tuple[str, OrderRow]], dict[str, int], int]:
        """Start building the owners off the lock (see :meth:`IdTexts.begin_owners`)."""
        return self._ids.begin_owners(self.rows)

    def install_owners(self, owners: list[Owners], copied: list[tuple[str, OrderRow]]) -> None:
        """Adopt owners built from ``copied`` rows (see :meth:`IdTexts.install_owners`)."""
        self._ids.install_owners(owners, copied, self.rows)

    # ------------------------------------------------------------ snapshots

    def export(self) -> tuple[list[OrderRow], list[str], dict[str, array[int]]]:
        """Return what a snapshot needs; cheap (references and one list copy).

        The postings are handed over live: they only ever grow by appending texts numbered
        from ``len(texts)`` on, so :func:`encode_payload` cuts them back to this moment.
        """
        return list(self.rows.values()), *self._ids.export()

    @classmethod
    def load(
        cls, rows: list[OrderRow], texts: list[str], grams: dict[str, array[int]]
    ) -> SearchIndex:
        """Build an index from a snapshot's rows, texts and postings."""
        index = cls()
        index.rows.update((row.order_id, row) for row in rows)
        # A text equal to a row's order id is that id's string, as when folded live (no copy).
        own = index.rows
        texts = [text if (row := own.get(text)) is None else row.order_id for text in texts]
        index._ids = IdTexts(texts, grams, owners_built=False)  # built when needles need them
        by_status = index._by_status
        for row in rows:
            by_status[row.status].add(row.order_id)
        index._rebuild_orderings()
        return index


def _counted(entries: Iterator[Entry], visited: Iterator[int]) -> Iterator[Entry]:
    # zip advances `visited` once per entry it yields: next(visited) is then the count.
    return (entry for entry, _ in zip(entries, visited, strict=False))
