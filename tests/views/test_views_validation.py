"""Every InvalidQuery case: raised when a query is asked, never when it is built."""

from decimal import Decimal
from typing import Any

import pytest

from domain.errors import InvalidQuery
from views.orders import (
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    SearchOrders,
    order_views,
    validate_query,
)

# (query built with a bad value, the field InvalidQuery must name)
INVALID: list[tuple[object, str]] = [
    (GetCustomerOrders("c", page=0), "page"),
    (GetCustomerOrders("c", page=-3), "page"),
    (GetCustomerOrders("c", page_size=0), "page_size"),
    (GetCustomerOrders("c", page_size=1001), "page_size"),
    (GetCustomerOrders("c", status="shipping"), "status"),
    (GetCustomerOrders("c", status=""), "status"),
    (SearchOrders(page=0), "page"),
    (SearchOrders(page_size=0), "page_size"),
    (SearchOrders(page_size=1001), "page_size"),
    (SearchOrders(status="Pending"), "status"),
    (SearchOrders(sort_by="customer_id"), "sort_by"),
    (SearchOrders(sort_by=""), "sort_by"),
    (SearchOrders(sort_order="descending"), "sort_order"),
    (SearchOrders(sort_order="DESC"), "sort_order"),
]


def _typed(value: object) -> Any:
    # Wrong types on purpose, as an untyped caller could send them; Any keeps mypy out of it.
    return value


WRONG_TYPES: list[tuple[object, str]] = [
    (GetOrderById(order_id=_typed(42)), "order_id"),
    (GetCustomerOrders(customer_id=_typed(None)), "customer_id"),
    (GetCustomerOrders("c", page=_typed("x")), "page"),
    (GetCustomerOrders("c", page=_typed(1.0)), "page"),
    (GetCustomerOrders("c", page=_typed(True)), "page"),  # noqa: FBT003 - the bad value itself
    (GetCustomerOrders("c", page_size=_typed("20")), "page_size"),
    (GetCustomerOrders("c", status=_typed(1)), "status"),
    (SearchOrders(query=_typed(b"bytes")), "query"),
    (SearchOrders(query=_typed(None)), "query"),
    (SearchOrders(min_total=_typed(1.5)), "min_total"),
    (SearchOrders(max_total=_typed("10")), "max_total"),
    (SearchOrders(min_total=Decimal("NaN")), "min_total"),
    (SearchOrders(max_total=Decimal("Infinity")), "max_total"),
    (SearchOrders(sort_by=_typed(None)), "sort_by"),
    (SearchOrders(sort_order=_typed(["asc"])), "sort_order"),
    (SearchOrders(page=_typed(None)), "page"),
    (SearchOrders(page_size=_typed(Decimal(20))), "page_size"),
]

VALID: list[object] = [
    GetOrderById("o-1"),
    GetOrderById(order_id=""),
    GetCustomerOrders("c"),
    GetCustomerOrders("c", status="cancelled", page=10**30, page_size=1),
    GetCustomerOrders(customer_id="c", page_size=1000),
    SearchOrders(),
    # An int bound is exact, so it is accepted like a Decimal.
    SearchOrders(query="x", status="shipped", min_total=Decimal(0), max_total=_typed(5)),
    SearchOrders(min_total=Decimal(9), max_total=Decimal(1)),  # empty range: no error
    SearchOrders(sort_by="item_count", sort_order="asc"),
    GetOrderStats(),
]


@pytest.mark.parametrize(("query", "field"), INVALID + WRONG_TYPES)
def test_validate_query_names_the_offending_field(query: object, field: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        validate_query(query)
    assert raised.value.field == field
    assert raised.value.allowed
    assert field in str(raised.value)


@pytest.mark.parametrize(("query", "field"), INVALID + WRONG_TYPES)
def test_the_serving_view_raises_invalid_query_too(query: object, field: str) -> None:
    views = order_views(None)
    view = next(v for v in views if isinstance(query, v.query_types))
    with pytest.raises(InvalidQuery) as raised:
        view.query(query)
    assert raised.value.field == field


@pytest.mark.parametrize("query", VALID)
def test_valid_queries_pass(query: object) -> None:
    validate_query(query)
    view = next(v for v in order_views(None) if isinstance(query, v.query_types))
    view.query(query)


def test_a_query_that_is_not_an_order_query_is_invalid() -> None:
    with pytest.raises(InvalidQuery) as raised:
        validate_query("GetOrderStats")
    assert raised.value.field == "query"


def test_an_absurd_page_number_is_reported_without_printing_it_whole() -> None:
    with pytest.raises(InvalidQuery) as raised:
        validate_query(SearchOrders(page=-(10**5000)))
    assert len(str(raised.value)) < 200


def test_building_queries_never_validates() -> None:
    for query, _ in INVALID + WRONG_TYPES:
        assert query is not None
    assert SearchOrders(page=0).page == 0
