"""The order queries, their results, and query validation.

Queries and results are frozen msgspec Structs, so they cross threads safely and serialize to JSON
without hand conversion. Building a query never raises: :func:`validate_query` checks it when it is
asked (the router calls it, and every view calls it again before answering).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final, Generic, TypeVar

import msgspec

from domain.errors import InvalidQuery
from domain.orders import STATUSES

__all__ = [
    "MAX_PAGE_SIZE",
    "SORT_FIELDS",
    "SORT_ORDERS",
    "STATUSES",
    "TOP_PRODUCTS",
    "GetCustomerOrders",
    "GetOrderById",
    "GetOrderStats",
    "OrderStats",
    "OrderView",
    "Page",
    "SearchOrders",
    "validate_query",
]

T = TypeVar("T")

MAX_PAGE_SIZE: Final = 1000
SORT_FIELDS: Final = ("created_at", "total_amount", "item_count")
SORT_ORDERS: Final = ("asc", "desc")
TOP_PRODUCTS: Final = 10

# ---------------------------------------------------------------- results


class OrderView(msgspec.Struct, frozen=True, gc=False):
    """One order as the read side shows it.

    Attributes:
        order_id: The order's id.
        customer_id: The customer who placed it.
        status: ``"pending"``, ``"shipped"`` or ``"cancelled"``.
        total_amount: Sum of price x quantity over the order's current lines.
        item_count: Sum of the quantities of its current lines.
        created_at: When it was created (UTC).
        shipped_at: When it was shipped, None until then.
    """

    order_id: str
    customer_id: str
    status: str
    total_amount: Decimal
    item_count: int
    created_at: datetime
    shipped_at: datetime | None = None


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a paginated answer.

    Attributes:
        items: The page's items (empty past the last page).
        total: How many items match, over all pages.
        page: The page number asked for, from 1.
        page_size: The page size asked for.
        total_pages: ``ceil(total / page_size)``; 0 when nothing matches.
    """

    items: list[T]
    total: int
    page: int
    page_size: int
    total_pages: int


class OrderStats(msgspec.Struct, frozen=True):
    """Figures over every order.

    Attributes:
        total_orders: How many orders exist.
        by_status: Orders per status; always holds all three statuses (0 when none).
        revenue: Sum of the totals of shipped orders.
        top_products: Up to ``GetOrderStats.top`` (10) ``(product_id, units)``, most units
            first, ties by product id.
            Units count the current lines of orders that are not cancelled (pending and
            shipped): a cancelled order sold nothing, a pending one is demand. Products whose
            count is 0 are left out.
    """

    total_orders: int
    by_status: dict[str, int]
    revenue: Decimal
    top_products: list[tuple[str, int]]


# ---------------------------------------------------------------- queries
# Fields are positional-or-keyword in the order the public contract lists them, so both
# `GetOrderById("o-1")` and `GetOrderById(order_id="o-1")` work. The tag (the class name) lets an
# HTTP layer decode any query with one typed Decoder over their union.


class _OrderQuery(msgspec.Struct, frozen=True):
    """Base of the order queries: each validates itself (the engine calls ``validate`` first)."""

    def validate(self) -> None:
        """Check the parameters (see :func:`validate_query`).

        Raises:
            InvalidQuery: A parameter has the wrong type or is out of range.
        """
        validate_query(self)


class GetOrderById(_OrderQuery, frozen=True, tag=True):
    """Ask for one order: answers ``OrderView | None``.

    Attributes:
        order_id: The order's id.
    """

    order_id: str


class GetCustomerOrders(_OrderQuery, frozen=True, tag=True):
    """Ask for a customer's orders, newest first: answers ``Page[OrderView]``.

    Newest first means by descending position of the order's creating event.

    Attributes:
        customer_id: The customer's id.
        status: Only orders with this status; None for all.
        page: Page number, from 1.
        page_size: Items per page, 1 to 1000.
    """

    customer_id: str
    status: str | None = None
    page: int = 1
    page_size: int = 20


class SearchOrders(_OrderQuery, frozen=True, tag=True):
    """Search every order: answers ``Page[OrderView]``.

    Attributes:
        query: Case-insensitive substring of the order id, the customer id or the id of any
            product currently in the order; ``""`` matches everything.
        status: Only orders with this status; None for all.
        min_total: Only orders whose total is at least this (inclusive); None for no bound.
        max_total: Only orders whose total is at most this (inclusive); None for no bound.
        sort_by: ``"created_at"``, ``"total_amount"`` or ``"item_count"``; ties are broken by the
            position of the order's creating event, in the same direction.
        sort_order: ``"asc"`` or ``"desc"``.
        page: Page number, from 1.
        page_size: Items per page, 1 to 1000.
    """

    query: str = ""
    status: str | None = None
    min_total: Decimal | None = None
    max_total: Decimal | None = None
    sort_by: str = "created_at"
    sort_order: str = "desc"
    page: int = 1
    page_size: int = 20


class GetOrderStats(_OrderQuery, frozen=True, tag=True):
    """Ask for figures over every order: answers :class:`OrderStats`.

    Attributes:
        top: How many products ``top_products`` lists, an int >= 1 (10 by default); None lists
            every product (``cluster.ShardedEngine`` asks its shards so, to merge exactly).
    """

    top: int | None = TOP_PRODUCTS


# ---------------------------------------------------------------- validation


def _shown(value: object) -> object:
    # repr() of an int over 4300 digits raises ValueError: absurd numbers must still be reported.
    if isinstance(value, int) and abs(value) > 10**18:
        return f"{Decimal(value):.3E}"
    return value


def _check_str(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidQuery(field, _shown(value), "a string")


def _check_int(field: str, value: object, low: int, high: int | None = None) -> None:
    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    # bool is an int subclass, but page=True is a bug on the caller's side, not page 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQuery(field, _shown(value), allowed)
    if value < low or (high is not None and value > high):
        raise InvalidQuery(field, _shown(value), allowed)


def _check_choice(field: str, value: object, choices: tuple[str, ...], optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(choices) + (" or None" if optional else "")
        raise InvalidQuery(field, _shown(value), allowed)


def _check_money(field: str, value: object) -> None:
    if value is None:
        return
    # Money is exact: a float bound would compare inexactly against Decimal totals.
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise InvalidQuery(field, _shown(value), "a Decimal (or int), or None")
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidQuery(field, value, "a finite Decimal, or None")


def _check_page(page: object, page_size: object) -> None:
    _check_int("page", page, 1)
    _check_int("page_size", page_size, 1, MAX_PAGE_SIZE)


def validate_query(query: object) -> None:
    """Check ``query``'s parameters.

    Raises:
        InvalidQuery: A parameter has the wrong type or is out of range (page < 1, page_size
            outside 1..1000, an unknown status, sort_by or sort_order...), or ``query`` is not
            an order query. Its ``field``, ``value`` and ``allowed`` say which and why.
    """
    if isinstance(query, GetOrderById):
        _check_str("order_id", query.order_id)
    elif isinstance(query, GetCustomerOrders):
        _check_str("customer_id", query.customer_id)
        _check_choice("status", query.status, STATUSES, optional=True)
        _check_page(query.page, query.page_size)
    elif isinstance(query, SearchOrders):
        _check_str("query", query.query)
        _check_choice("status", query.status, STATUSES, optional=True)
        _check_money("min_total", query.min_total)
        _check_money("max_total", query.max_total)
        _check_choice("sort_by", query.sort_by, SORT_FIELDS, optional=False)
        _check_choice("sort_order", query.sort_order, SORT_ORDERS, optional=False)
        _check_page(query.page, query.page_size)
    elif isinstance(query, GetOrderStats):
        if query.top is not None:
            _check_int("top", query.top, 1)
    else:
        raise InvalidQuery(
            "query",
            type(query).__name__,
            "GetOrderById, GetCustomerOrders, SearchOrders or GetOrderStats",
        )


def make_page(items: list[T], total: int, page: int, page_size: int) -> Page[T]:
    """Build a :class:`Page` (``total_pages`` is 0 when ``total`` is 0)."""
    return Page(
        items=items,
        total=total,
        page=page,
        page_size=page_size,
        total_pages=-(-total // page_size),
    )
