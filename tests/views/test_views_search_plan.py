"""views._search_plan: a plan completed into the answer, against the reference search."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from views_kit import OrderLog, random_log, ref_search

from views._order_rows import OrderRow, evolve, haystack
from views._order_types import SearchOrders, make_page
from views._search_plan import Plan, finish


def _rows(log: OrderLog) -> list[OrderRow]:
    rows: dict[str, OrderRow] = {}
    for record in log.records:
        order_id = record.stream_id
        rows[order_id] = evolve(rows.get(order_id), record.event, record.position)  # type: ignore[arg-type]
    # The search view's rows carry their search text, which the needle is matched against.
    return [msgspec.structs.replace(row, haystack=haystack(row)) for row in rows.values()]


QUERIES = [
    SearchOrders(),
    SearchOrders(status="shipped"),
    SearchOrders(query="sku-0", sort_by="total_amount", sort_order="asc"),
    SearchOrders(query="cust", min_total=Decimal(10), page=2, page_size=3),
    SearchOrders(sort_by="item_count", page_size=5),
]


@pytest.mark.parametrize("query", QUERIES)
def test_every_row_filtered_ordered_and_paged_is_the_reference_answer(
    query: SearchOrders,
) -> None:
    log = random_log(seed=11, commands=160)
    plan = Plan(items=None, total=-1, rows=_rows(log))  # total -1: the rows must be filtered

    assert finish(query, plan) == ref_search(log, query)


@pytest.mark.parametrize("query", QUERIES)
def test_the_hits_alone_are_ordered_and_paged_without_filtering_again(
    query: SearchOrders,
) -> None:
    log = random_log(seed=12, commands=160)
    everything = msgspec.structs.replace(query, page=1, page_size=100)
    expected = ref_search(log, everything)
    assert expected.total <= 100
    hits = [row for row in _rows(log) if row.order_id in {v.order_id for v in expected.items}]
    plan = Plan(items=None, total=len(hits), rows=hits)

    assert finish(query, plan) == ref_search(log, query)


def test_a_page_the_index_picked_is_answered_as_it_is() -> None:
    log = random_log(seed=13, commands=60)
    views = [row.view() for row in _rows(log)][:4]
    query = SearchOrders(page=2, page_size=4)

    assert finish(query, Plan(items=views, total=9)) == make_page(views, 9, 2, 4)
