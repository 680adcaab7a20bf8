"""The query routes: one order, a customer's orders, search, stats, status."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response

from api._common import ask, reads_of, settings_of
from api._errors import MsgspecResponse
from api._numbers import read_amount
from api._openapi import responses
from api._params import (
    After,
    CustomerId,
    MaxTotal,
    MinTotal,
    OrderId,
    PageNumber,
    PageSize,
    SearchText,
    SortBy,
    SortOrder,
    StatusFilter,
    read_id,
)
from api._schemas import (
    OrderDetails,
    StaleOrder,
    StalePage,
    StaleStats,
    StatsAnswer,
    StatusAnswer,
    json_content,
)
from domain.errors import AggregateNotFound, ConsistencyTimeout
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

_READ_ERRORS = (409, 422, 503)  # 409: ?after= beyond the head; 422: a bad parameter
_PATH_READ_ERRORS = (404, *_READ_ERRORS)  # 404: no such order, or an unroutable path id


def _route(
    operation: str, summary: str, answer: Any, errors: tuple[int, ...], stale: Any = None
) -> dict[str, Any]:
    return {
        "operation_id": operation,
        "summary": summary,
        "response_class": MsgspecResponse,
        "responses": responses(
            200,
            json_content(answer),
            errors,
            operation=operation,
            etag=answer is OrderDetails,
            stale=stale,
        ),
        "tags": ["queries"],
    }


def register_queries(app: FastAPI) -> None:
    """Add the query routes to ``app``."""
    pages = Page[OrderView]

    # Declared before /orders/{order_id}; the id grammar reserves "search" besides.
    @app.get(
        "/orders/search",
        **_route("search_orders", "Search every order", pages, _READ_ERRORS, StalePage),
    )
    async def search_orders(
        request: Request,
        *,
        q: SearchText = "",
        status: StatusFilter = None,
        min_total: MinTotal = None,
        max_total: MaxTotal = None,
        sort_by: SortBy = "created_at",
        sort_order: SortOrder = "desc",
        page: PageNumber = 1,
        page_size: PageSize = 20,
        after: After = None,
    ) -> Response:
        query = SearchOrders(
            query=q,
            status=status,
            min_total=read_amount("min_total", min_total),
            max_total=read_amount("max_total", max_total),
            sort_by=sort_by,
            sort_order=sort_order,
            page=page,
            page_size=page_size,
        )
        return MsgspecResponse(await ask(request, query, after))

    @app.get(
        "/orders/{order_id}",
        **_route(
            "get_order",
            "One order (ETag: its version)",
            OrderDetails,
            (404, *_READ_ERRORS),
            StaleOrder,
        ),
    )
    async def get_order(request: Request, order_id: OrderId, after: After = None) -> Response:
        read_id(order_id, "order_id")
        timeout = settings_of(request).read_timeout
        version, position = await reads_of(request).order_head(order_id, timeout)
        if version == 0:
            raise AggregateNotFound(order_id, "order")
        # Wait for the view to hold at least the version we report: the ETag never claims a
        # newer state than the body shows (a newer body only causes a harmless 409 later).
        view = await ask(request, GetOrderById(order_id), after, position)
        if view is None:  # pragma: no cover - the view applied the order's events above
            raise AggregateNotFound(order_id, "order")
        details = OrderDetails(**msgspec.structs.asdict(view), version=version)
        return MsgspecResponse(details, headers={"ETag": f'"{version}"'})

    @app.get(
        "/customers/{customer_id}/orders",
        **_route(
            "customer_orders",
            "A customer's orders, newest first",
            pages,
            _PATH_READ_ERRORS,
            StalePage,
        ),
    )
    async def customer_orders(
        request: Request,
        customer_id: CustomerId,
        *,
        status: StatusFilter = None,
        page: PageNumber = 1,
        page_size: PageSize = 20,
        after: After = None,
    ) -> Response:
        read_id(customer_id, "customer_id")
        query = GetCustomerOrders(customer_id, status=status, page=page, page_size=page_size)
        return MsgspecResponse(await ask(request, query, after))

    @app.get(
        "/stats",
        **_route("get_stats", "Figures over every order", StatsAnswer, _READ_ERRORS, StaleStats),
    )
    async def stats(request: Request, after: After = None) -> Response:
        try:
            stats = await ask(request, GetOrderStats(), after)
        except ConsistencyTimeout as error:  # its stale answer goes out in the wire form too
            if not isinstance(error.stale_result, OrderStats):  # pragma: no cover - the view's
                raise
            stale = StatsAnswer.of(error.stale_result)
            raise ConsistencyTimeout(error.view, error.wanted, error.reached, stale) from None
        return MsgspecResponse(StatsAnswer.of(stats))

    @app.get(
        "/status",
        **_route("get_status", "Health: head, views and their lag", StatusAnswer, (503,)),
    )
    async def status(request: Request) -> Response:
        timeout = settings_of(request).read_timeout
        return MsgspecResponse(await reads_of(request).status(timeout))
