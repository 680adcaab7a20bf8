"""The order read models, each written once over :class:`~views._view.Storage`.

Every model keeps the per-order data it needs itself (views are independent, each with its own
checkpoint), as an :class:`~views._order_rows.OrderRow` (see :mod:`views._order_base`).
``order_stats`` lives in :mod:`views._order_stats`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

import msgspec

from domain.orders import OrderItemAdded, OrderItemRemoved
from views._order_base import OrderRowsModel, unexpected
from views._order_rows import ORDER_TAGS, SEP, OrderEvent, OrderRow, haystack, row_matcher
from views._order_stats import OrderStatsModel
from views._order_types import (
    GetCustomerOrders,
    GetOrderById,
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


class OrderDetailsModel(OrderRowsModel):
    """``order_details``: one row per order id; answers :class:`GetOrderById`."""

    query_types: tuple[type, ...] = (GetOrderById,)
    # Persistent: its checkpoint survives a restart, so it needs no replay at open.
    default_backend: Backend = "lmdb"

    def __init__(self, name: str = "order_details") -> None:
        super().__init__(name)

    def _write(
        self,
        storage: Storage,  # noqa: ARG002 - the row is all this view keeps
        orders: Table[OrderRow],
        old: OrderRow | None,  # noqa: ARG002
        new: OrderRow,
        event: OrderEvent | None,  # noqa: ARG002
    ) -> None:
        orders.put(new.order_id, new)

    def query(self, storage: Storage, query: object) -> OrderView | None:
        """Answer a :class:`GetOrderById`."""
        validate_query(query)
        if not isinstance(query, GetOrderById):
            raise unexpected(query)
        row = self._orders(storage).get(query.order_id)
        return None if row is None else row.view()


class CustomerOrdersModel(OrderRowsModel):
    """``customer_orders``: rows plus a per-customer index by creating position.

    Answers :class:`GetCustomerOrders`, newest first.
    """

    query_types: tuple[type, ...] = (GetCustomerOrders,)
    default_backend: Backend = "lmdb"  # persistent, like order_details
    _INDEX: Final = "customer"

    def __init__(self, name: str = "customer_orders") -> None:
        super().__init__(name)

    def _write(
        self,
        storage: Storage,
        orders: Table[OrderRow],
        old: OrderRow | None,
        new: OrderRow,
        event: OrderEvent | None,  # noqa: ARG002 - a new order is all the index needs
    ) -> None:
        # A new order is also indexed under its customer.
        orders.put(new.order_id, new)
        if old is None:
            storage.index(self._INDEX).add(new.customer_id, new.position, new.order_id)

    def query(self, storage: Storage, query: object) -> Page[OrderView]:
        """Answer a :class:`GetCustomerOrders`."""
        validate_query(query)
        if not isinstance(query, GetCustomerOrders):
            raise unexpected(query)
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


class OrderSearchModel(OrderRowsModel):
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

    def _write(
        self,
        storage: Storage,  # noqa: ARG002 - the row is all this view keeps
        orders: Table[OrderRow],
        old: OrderRow | None,
        new: OrderRow,
        event: OrderEvent | None,
    ) -> None:
        # The search text changes only when the ids do: evolve() carries the old one over.
        if old is None or event is None or isinstance(event, OrderItemRemoved):
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
            raise unexpected(query)
        return search_page(self._filter(storage, query), query, in_creation_order=True)

    def _filter(self, storage: Storage, query: SearchOrders) -> list[OrderRow]:
        matches = row_matcher(query)
        return [row for row in self._orders(storage).values() if matches(row)]
