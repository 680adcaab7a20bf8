"""The query routes: one order, a customer's orders, search, stats, status."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec
from fastapi import FastAPI, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api._common import ERRORS, After, ask, engine_of
from api._errors import MsgspecResponse
from api._schemas import OrderDetails, StatusAnswer, json_content
from domain.errors import AggregateNotFound, InvalidCommand, InvalidQuery
from domain.orders import ORDERS
from store import EventStore
from views.orders import (
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderStats,
    OrderView,
    Page,
    SearchOrders,
)

__all__ = ["register_queries"]


def _money(field: str, raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise InvalidQuery(field, raw[:60], "a decimal number such as 12.50") from None


def _order_head(store: EventStore, order_id: str) -> tuple[int, int]:
    """Return the order's version and the position of its last event ((0, 0) if none)."""
    try:
        version = store.stream_version(order_id, stream_type=ORDERS.stream_type)
    except InvalidCommand:  # an id no order can have (NUL, too long): it does not exist
        return 0, 0
    if version == 0:
        return 0, 0
    # Events come from version `version` on: the first is the one that made this version.
    events = store.read_stream(order_id, version, stream_type=ORDERS.stream_type)
    return version, events[0].position


def register_queries(app: FastAPI) -> None:
    """Add the query routes to ``app``."""

    def ok(wire_type: Any) -> dict[str, Any]:
        return {
            "response_class": MsgspecResponse,
            "responses": {
                **ERRORS,
                200: {"description": "OK", "content": json_content(wire_type)},
            },
            "tags": ["queries"],
        }

    # Declared before /orders/{order_id}, which would otherwise take "search" for an order id.
    @app.get("/orders/search", summary="Search every order", **ok(Page[OrderView]))
    async def search_orders(
        request: Request,
        *,
        q: Annotated[str, Query(description="Substring of order, customer or product id")] = "",
        status: str | None = None,
        min_total: Annotated[str | None, Query(description="Inclusive, e.g. 10.00")] = None,
        max_total: Annotated[str | None, Query(description="Inclusive, e.g. 99.99")] = None,
        sort_by: Annotated[str, Query(description="created_at|total_amount|item_count")] = (
            "created_at"
        ),
        sort_order: Annotated[str, Query(description="asc|desc")] = "desc",
        page: int = 1,
        page_size: int = 20,
        after: After = None,
    ) -> Response:
        query = SearchOrders(
            query=q,
            status=status,
            min_total=_money("min_total", min_total),
            max_total=_money("max_total", max_total),
            sort_by=sort_by,
            sort_order=sort_order,
            page=page,
            page_size=page_size,
        )
        return MsgspecResponse(await ask(request, query, after))

    @app.get("/orders/{order_id}", summary="One order (ETag: its version)", **ok(OrderDetails))
    async def get_order(request: Request, order_id: str, after: After = None) -> Response:
        engine = engine_of(request)
        version, position = await run_in_threadpool(_order_head, engine.store, order_id)
        if version == 0:
            raise AggregateNotFound(order_id, "order")
        # Wait for the view to hold at least the version we report: the ETag never claims a
        # newer state than the body shows (a newer body only causes a harmless 409 later).
        view = await ask(request, GetOrderById(order_id), max(after or 0, position))
        if view is None:  # pragma: no cover - the view applied the order's events above
            raise AggregateNotFound(order_id, "order")
        details = OrderDetails(**msgspec.structs.asdict(view), version=version)
        return MsgspecResponse(details, headers={"ETag": f'"{version}"'})

    @app.get(
        "/customers/{customer_id}/orders",
        summary="A customer's orders, newest first",
        **ok(Page[OrderView]),
    )
    async def customer_orders(
        request: Request,
        customer_id: str,
        *,
        status: str | None = None,
        page: int = 1,
        page_size: int = 20,
        after: After = None,
    ) -> Response:
        query = GetCustomerOrders(customer_id, status=status, page=page, page_size=page_size)
        return MsgspecResponse(await ask(request, query, after))

    @app.get("/stats", summary="Figures over every order", **ok(OrderStats))
    async def stats(request: Request, after: After = None) -> Response:
        return MsgspecResponse(await ask(request, GetOrderStats(), after))

    @app.get("/status", summary="Health: head, views and their lag", **ok(StatusAnswer))
    async def status(request: Request) -> Response:
        current = await run_in_threadpool(engine_of(request).status)
        healthy = all(not view.error and not view.parked for view in current.views.values())
        answer = StatusAnswer(**msgspec.structs.asdict(current), healthy=healthy)
        return MsgspecResponse(answer)
