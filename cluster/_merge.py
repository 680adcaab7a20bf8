"""Gathering the answers of every shard into the answer one engine would give.

- :class:`GetOrderStats`: counts, ``by_status`` and ``revenue`` summed; ``top_products`` exact:
  every shard is asked for all its products (``GetOrderStats(top=None)``, see
  :func:`shard_query`), their units are summed per product, and the query's ``top`` are kept
  (most units first, ties by product id). Exact because an order lives on exactly one shard: a
  product's units over every order are the sum of its units on each shard, and a product with
  0 units on a shard is left out there as in one engine.
- :class:`GetCustomerOrders` and :class:`SearchOrders`: each shard sends its first
  ``page * page_size`` items (see ``Shard.query_top``); they are merged and re-sorted by the
  query's sort key with ties broken by ``created_at`` then order id, all in the sort's direction
  (a customer's orders: newest ``created_at`` first), and the page is cut from the merged list.
  ``total`` is summed over every shard and ``total_pages`` computed from it.

One limit, documented in the README: within a shard, a customer's orders are taken in the
shard's order (creating position), which equals ``created_at`` order while its clock does not
go backwards. The price of exact products: a stats answer carries every product of each shard.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import msgspec

from cluster._shard import TopAnswer
from views._order_types import STATUSES
from views.orders import GetCustomerOrders, GetOrderStats, OrderStats, OrderView, Page, SearchOrders

__all__ = [
    "Merger",
    "descending",
    "merge_pages",
    "merge_stats",
    "merger_for",
    "shard_query",
    "sort_key",
]

Merger = Callable[[Any, Sequence[Any]], Any]
"""Merges the answers of every shard (in shard order) to a query into one answer."""

_NO_UNITS: Final = 0


def shard_query(query: object) -> object:
    """What each shard is asked for ``query``: every product for stats (see the docstring)."""
    if isinstance(query, GetOrderStats):
        return msgspec.structs.replace(query, top=None)
    return query


def merge_stats(query: GetOrderStats, answers: Sequence[OrderStats]) -> OrderStats:
    """Sum the figures of every shard, each with all its products (see the module docstring)."""
    by_status = dict.fromkeys(STATUSES, 0)
    revenue = Decimal(0)
    units: dict[str, int] = {}
    for answer in answers:
        for status, count in answer.by_status.items():
            by_status[status] = by_status.get(status, 0) + count
        revenue += answer.revenue
        for product_id, product_units in answer.top_products:
            units[product_id] = units.get(product_id, _NO_UNITS) + product_units
    ranked = sorted(units.items(), key=lambda item: (-item[1], item[0]))
    top = ranked if query.top is None else ranked[: query.top]
    return OrderStats(
        total_orders=sum(answer.total_orders for answer in answers),
        by_status=by_status,
        revenue=revenue,
        top_products=top,
    )


def sort_key(query: GetCustomerOrders | SearchOrders) -> Callable[[OrderView], tuple[Any, ...]]:
    """The merged order of ``query``'s items: its sort key, then ``created_at``, then order id."""
    if isinstance(query, GetCustomerOrders):
        return lambda item: (item.created_at, item.order_id)
    field = query.sort_by
    return lambda item: (getattr(item, field), item.created_at, item.order_id)


def descending(query: GetCustomerOrders | SearchOrders) -> bool:
    """Whether ``query``'s items come largest key first."""
    return isinstance(query, GetCustomerOrders) or query.sort_order == "desc"


def merge_pages(
    query: GetCustomerOrders | SearchOrders, answers: Sequence[TopAnswer]
) -> Page[OrderView]:
    """Cut ``query``'s page from the shards' first items (see the module docstring)."""
    seen: set[str] = set()
    items: list[OrderView] = []
    for answer in answers:
        for item in answer.items:
            if item.order_id not in seen:  # a shard paged while it changed: keep one copy
                seen.add(item.order_id)
                items.append(item)
    items.sort(key=sort_key(query), reverse=descending(query))
    start = (query.page - 1) * query.page_size
    total = sum(answer.total for answer in answers)
    return Page(
        items=items[start : start + query.page_size],
        total=total,
        page=query.page,
        page_size=query.page_size,
        total_pages=-(-total // query.page_size),
    )


def merger_for(query: object, extra: Mapping[type, Merger]) -> Merger | None:
    """The merger of ``query``'s type: a user's from ``extra``, else the order queries' own."""
    found = extra.get(type(query))
    if found is not None:
        return found
    if isinstance(query, GetCustomerOrders | SearchOrders):
        return merge_pages
    if isinstance(query, GetOrderStats):
        return merge_stats
    return None
