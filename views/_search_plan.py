"""A search's plan, and its completion into the answer outside the index's lock.

:meth:`~views._search_index.SearchIndex.plan` reads the index under the view's lock and returns a
:class:`Plan`: the page itself when the index could pick it, else the rows to order and page.
:func:`finish` does that ordering and paging (possibly over many hits) on immutable rows, so the
view's projector is not held up meanwhile.
"""

from __future__ import annotations

from typing import NamedTuple

from views._order_models import search_page
from views._order_rows import OrderRow, row_matcher
from views._order_types import OrderView, Page, SearchOrders, make_page

__all__ = ["Plan", "finish"]


class Plan(NamedTuple):
    """What :meth:`~views._search_index.SearchIndex.plan` found, for :func:`finish` to complete.

    Attributes:
        items: The page itself, when the plan could pick it (then ``total`` is exact).
        total: How many orders match (-1 when ``rows`` must be filtered first).
        rows: Rows to order and page (``items`` is None then): the hits, or every row
            when ``total`` is -1.
    """

    items: list[OrderView] | None
    total: int
    rows: list[OrderRow] | None = None


def finish(query: SearchOrders, plan: Plan) -> Page[OrderView]:
    """Complete ``plan`` into the answer: filter if asked, order, page. Needs no lock."""
    if plan.items is not None:
        return make_page(plan.items, plan.total, query.page, query.page_size)
    rows = plan.rows or []
    if plan.total < 0:
        rows = list(filter(row_matcher(query), rows))
    return search_page(rows, query, in_creation_order=False)
