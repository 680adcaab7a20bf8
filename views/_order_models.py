"""The order read models, each written once over :class:`~views._view.Storage`.

Every model keeps the per-order data it needs itself (views are independent, each with its own
checkpoint), as an :class:`~views._order_rows.OrderRow` folded from the events by
:func:`~views._order_rows.evolve`, computed once per event for all of them
(:func:`~views._order_rows.shared_evolve`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from decimal import Decimal
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

import msgspec

from domain.orders import OrderItemAdded, OrderItemRemoved
from store import RecordedEvent
from views._order_rows import (
    ORDER_EVENTS,
    ORDER_TAGS,
    SEP,
    OrderEvent,
    OrderRow,
    haystack,
    row_matcher,
    shared_evolve,
)
from views._order_types import (
    STATUSES,
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderStats,
    OrderView,
    Page,
    SearchOrders,
    make_page,
    validate_query,
)
from views._view import Backend, Storage, Table

if TYPE_CHECKING:
    from views._search import SearchView

__all__ = [
    "ORDER_TAGS",
    "CustomerOrdersModel",
    "OrderDetailsModel",
    "OrderSearchModel",
    "OrderStatsModel",
    "search_page",
]


def _unexpected(query: object) -> TypeError:
    return TypeError(f"unexpected query {type(query).__name__}")


class _OrderRowsModel:
    """Shared by the views that keep one :class:`OrderRow` per order."""

    tags: frozenset[str] | None = ORDER_TAGS
    # 2: order lines keep their price as text (RowLine); 3: rows are flat (OrderRow). Rows of
    # another version are not read back.
    version: int = 3
    # In memory unless said otherwise: rebuilt from the log at open (from a snapshot, then the
    # tail); search scans every order and stats are small, both fastest as plain objects.
    default_backend: Backend = "memory"
    _TABLE: Final = "order"

    def __init__(self, name: str) -> None:
        self.name = name

    def _fold(
        self, orders: Table[OrderRow], record: RecordedEvent
    ) -> tuple[OrderRow | None, OrderRow, OrderEvent] | None:
        """Return (old row, new row, event), or None if ``record`` is not an order event."""
        event = record.event
        if not isinstance(event, ORDER_EVENTS):
            return None  # another aggregate's event: not ours (the tag filter usually drops it)
        old = orders.get(event.order_id)
        return old, shared_evolve(old, event, record.position), event

    def _orders(self, storage: Storage) -> Table[OrderRow]:
        return storage.table(self._TABLE, OrderRow)

    def _row(self, storage: Storage, order_id: str) -> OrderRow:
        row = self._orders(storage).get(order_id)
        if row is None:  # pragma: no cover - an index entry always has its row (same txn)
            raise LookupError(f"view {self.name!r}: indexed order {order_id!r} has no row")
        return row


class OrderDetailsModel(_OrderRowsModel):
    """``order_details``: one row per order id; answers :class:`GetOrderById`."""

    query_types: tuple[type, ...] = (GetOrderById,)
    # Persistent: its checkpoint survives a restart, so it needs no replay at open.
    default_backend: Backend = "lmdb"

    def __init__(self, name: str = "order_details") -> None:
        super().__init__(name)

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Fold ``record`` into the order's row."""
        orders = self._orders(storage)
        folded = self._fold(orders, record)
        if folded is not None:
            new = folded[1]
            orders.put(new.order_id, new)

    def query(self, storage: Storage, query: object) -> OrderView | None:
        """Answer a :class:`GetOrderById`."""
        validate_query(query)
        if not isinstance(query, GetOrderById):
            raise _unexpected(query)
        row = self._orders(storage).get(query.order_id)
        return None if row is None else row.view()


class CustomerOrdersModel(_OrderRowsModel):
    """``customer_orders``: rows plus a per-customer index by creating position.

    Answers :class:`GetCustomerOrders`, newest first.
    """

    query_types: tuple[type, ...] = (GetCustomerOrders,)
    default_backend: Backend = "lmdb"  # persistent, like order_details
    _INDEX: Final = "customer"

    def __init__(self, name: str = "customer_orders") -> None:
        super().__init__(name)

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Fold ``record`` into the order's row; index a new order under its customer."""
        orders = self._orders(storage)
        folded = self._fold(orders, record)
        if folded is None:
            return
        old, new, _ = folded
        orders.put(new.order_id, new)
        if old is None:
            storage.index(self._INDEX).add(new.customer_id, new.position, new.order_id)

    def query(self, storage: Storage, query: object) -> Page[OrderView]:
        """Answer a :class:`GetCustomerOrders`."""
        validate_query(query)
        if not isinstance(query, GetCustomerOrders):
            raise _unexpected(query)
        ids = list(storage.index(self._INDEX).scan(query.customer_id, reverse=True))
        start = (query.page - 1) * query.page_size
        stop = start + query.page_size
        if query.status is None:
            # The index alone gives the total: only the page's rows are read.
            items = [self._row(storage, order_id).view() for order_id in ids[start:stop]]
            return make_page(items, len(ids), query.page, query.page_size)
        matching = [
            row for order_id in ids if (row := self._row(storage, order_id)).status == query.status
        ]
        items = [row.view() for row in matching[start:stop]]
        return make_page(items, len(matching), query.page, query.page_size)


# attrgetter keys run in C: sorting 100k rows by them is about twice as fast as with lambdas.
_SORT_KEYS: Final[dict[str, Callable[[OrderRow], Any]]] = {
    "created_at": attrgetter("created_us", "position"),
    "total_amount": attrgetter("total_amount", "position"),
    "item_count": attrgetter("item_count", "position"),
}


def search_page(
    hits: list[OrderRow], query: SearchOrders, *, in_creation_order: bool
) -> Page[OrderView]:
    """Order ``hits`` (every row matching ``query``) by the query's sort and return its page.

    Args:
        hits: The matching rows.
        query: The search (sort key, direction, page).
        in_creation_order: The rows come in creating-position order: a sort by creation is
            then linear (timsort finds the runs), cheaper than a heap.
    """
    key = _SORT_KEYS[query.sort_by]
    descending = query.sort_order == "desc"
    start = (query.page - 1) * query.page_size
    stop = start + query.page_size
    presorted = in_creation_order and query.sort_by == "created_at"
    if not presorted and stop * 4 < len(hits):
        # The page ends early in the hits: a heap picks the first `stop` rows cheaply.
        select = heapq.nlargest if descending else heapq.nsmallest
        ordered = select(stop, hits, key=key)
    else:
        ordered = sorted(hits, key=key, reverse=descending)
    items = [row.view() for row in ordered[start:stop]]
    return make_page(items, len(hits), query.page, query.page_size)


class OrderSearchModel(_OrderRowsModel):
    """``order_search``: rows with their ids casefolded; answers :class:`SearchOrders`.

    A query filters every row (linear), then orders the hits: by creation with one sort (linear
    on nearly sorted input), by total or count with a heap when the page ends early in the hits.
    """

    query_types: tuple[type, ...] = (SearchOrders,)

    def __init__(self, name: str = "order_search") -> None:
        super().__init__(name)

    def memory_view(self, *, skip_unknown: bool = False) -> SearchView:
        """Return the in-memory view to use for this model: indexed, not a scan of every row.

        The generic memory view would test every order per search (see :mod:`views._search`).
        """
        # Imported here: views._search_index builds on this module (search_page).
        from views._search import SearchView  # noqa: PLC0415 - breaks an import cycle

        return SearchView(self.name, skip_unknown=skip_unknown)

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Fold ``record`` into the order's row and refresh its search text."""
        orders = self._orders(storage)
        folded = self._fold(orders, record)
        if folded is None:
            return
        old, new, event = folded
        # The search text changes only when the ids do: evolve() carries the old one over.
        if old is None or isinstance(event, OrderItemRemoved):
            new = msgspec.structs.replace(new, haystack=haystack(new))
        elif isinstance(event, OrderItemAdded) and len(new.lines) != len(old.lines):
            # A new line, appended last; casefold() maps character by character, so this
            # equals haystack(new).
            text = old.haystack + SEP + event.product_id.casefold()
            new = msgspec.structs.replace(new, haystack=text)
        orders.put(new.order_id, new)

    def query(self, storage: Storage, query: object) -> Page[OrderView]:
        """Answer a :class:`SearchOrders`."""
        validate_query(query)
        if not isinstance(query, SearchOrders):
            raise _unexpected(query)
        return search_page(self._filter(storage, query), query, in_creation_order=True)

    def _filter(self, storage: Storage, query: SearchOrders) -> list[OrderRow]:
        matches = row_matcher(query)
        return [row for row in self._orders(storage).values() if matches(row)]


class _ProductUnits(msgspec.Struct, frozen=True, array_like=True, gc=False):
    product_id: str
    units: int


class _Totals(msgspec.Struct, frozen=True, array_like=True):
    by_status: dict[str, int]
    revenue: Decimal


def _revenue(row: OrderRow | None) -> Decimal:
    return row.total_amount if row is not None and row.status == "shipped" else Decimal(0)


def _counted(row: OrderRow) -> bool:
    # Units count over orders that are not cancelled: see OrderStats.top_products.
    return row.status != "cancelled"


def _unit_changes(
    old: OrderRow | None, new: OrderRow, event: OrderEvent
) -> Iterable[tuple[str, int]]:
    """Return (product id, change of units) pairs: units(new) - units(old), in O(1) mostly.

    Only the event's own product changes when items are added or removed (the status stays);
    every line moves at once when the order starts or stops counting (created, cancelled).
    """
    if old is None:
        sign = 1 if _counted(new) else 0
    elif isinstance(event, OrderItemAdded):
        return ((event.product_id, event.quantity),) if _counted(new) else ()
    elif isinstance(event, OrderItemRemoved):
        if not _counted(new):
            return ()
        product_id = event.product_id
        removed = sum(ln.quantity for ln in old.lines if ln.product_id == product_id)
        return ((product_id, -removed),)
    else:  # shipped or cancelled: the lines stay, the status may start or stop counting them
        sign = _counted(new) - _counted(old)
    if not sign:
        return ()
    delta: dict[str, int] = {}  # a dict: the lines of a created order may repeat a product
    for line in new.lines:
        delta[line.product_id] = delta.get(line.product_id, 0) + sign * line.quantity
    return delta.items()


_UNITS: Final = attrgetter("units")


def _top_order(row: _ProductUnits) -> tuple[int, str]:
    return (-row.units, row.product_id)


class OrderStatsModel(_OrderRowsModel):
    """``order_stats``: running totals per status, revenue and units per product.

    Each event changes the figures by the difference between the order's row before and after
    it, computed from the event's type in constant time (all lines only when an order is
    created, cancelled or shipped after a cancel). Answers :class:`GetOrderStats`.
    """

    query_types: tuple[type, ...] = (GetOrderStats,)
    _PRODUCTS: Final = "product"
    _TOTALS: Final = "totals"

    def __init__(self, name: str = "order_stats") -> None:
        super().__init__(name)

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Fold ``record`` into the order's row and the running figures."""
        orders = self._orders(storage)
        folded = self._fold(orders, record)
        if folded is None:
            return
        old, new, event = folded
        status = new.status
        totals: _Totals | None = None
        if old is None or old.status != status or status == "shipped":
            # Same status and not shipped (most events: items added to a pending order): the
            # counts stay and revenue would only gain 0 - 0, so the totals are left alone.
            current = storage.table(self._TOTALS, _Totals).get("") or _Totals(
                by_status={}, revenue=Decimal(0)
            )
            by_status = dict(current.by_status)
            if old is not None:
                by_status[old.status] -= 1
            by_status[status] = by_status.get(status, 0) + 1
            revenue = current.revenue + _revenue(new) - _revenue(old)
            totals = _Totals(by_status=by_status, revenue=revenue)
        products = storage.table(self._PRODUCTS, _ProductUnits)
        changed: list[tuple[str, int]] = []
        for product_id, change in _unit_changes(old, new, event):
            if change:
                row = products.get(product_id)
                changed.append((product_id, change + (row.units if row else 0)))
        # Everything is computed: now write.
        orders.put(new.order_id, new)
        if totals is not None:
            storage.table(self._TOTALS, _Totals).put("", totals)
        for product_id, units in changed:
            if units:
                products.put(product_id, _ProductUnits(product_id, units))
            else:
                products.delete(product_id)

    def query(self, storage: Storage, query: object) -> OrderStats:
        """Answer a :class:`GetOrderStats`."""
        validate_query(query)
        if not isinstance(query, GetOrderStats):
            raise _unexpected(query)
        totals = storage.table(self._TOTALS, _Totals).get("")
        counts = totals.by_status if totals else {}
        by_status = {status: counts.get(status, 0) for status in STATUSES}
        rows = list(storage.table(self._PRODUCTS, _ProductUnits).values())
        limit = len(rows) if query.top is None else query.top
        if len(rows) > limit:
            # The limit-th best unit count comes from a key-less heap over plain ints (C speed);
            # only rows at or above it (ties included) are sorted with the full key. With a
            # Python key over every product this query cost ~100 us at 500 products.
            cutoff = heapq.nlargest(limit, map(_UNITS, rows))[-1]
            rows = [row for row in rows if row.units >= cutoff]
        rows.sort(key=_top_order)
        top = rows[:limit]
        return OrderStats(
            total_orders=sum(by_status.values()),
            by_status=by_status,
            revenue=totals.revenue if totals else Decimal(0),
            top_products=[(row.product_id, row.units) for row in top],
        )
