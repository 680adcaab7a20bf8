"""The command routes: create, add and remove items, ship, cancel.

Every id in a path, a body or the ``Idempotency-Key`` header follows the engine's one grammar
(:mod:`domain.ids`); a path id is checked here first so the 422 names the field.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response

from api._body import decode_body, order_id_for_key, read_body
from api._common import answer, command_ids, run_command, settings_of
from api._errors import MsgspecResponse
from api._numbers import read_price, read_quantity
from api._openapi import responses
from api._params import IdempotencyKey, IfMatch, OrderId, ProductId
from api._schemas import (
    AddItemRequest,
    CancelRequest,
    CommandAnswer,
    CreateOrderRequest,
    json_content,
)
from domain.ids import validate_id
from domain.orders import (
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)

__all__ = ["register_commands"]

_ON_ORDER = (404, 409, 422, 503)  # a command on an existing order, without a body
_WITH_BODY = (404, 409, 413, 422, 503)


def _route(operation: str, summary: str, errors: tuple[int, ...], body: Any = None) -> Any:
    extra: dict[str, Any] = {}
    if body is not None:
        # The route reads the body itself (exact money, capped size): document it by hand.
        extra["requestBody"] = {"required": True, "content": json_content(body)}
    status = 201 if operation == "create_order" else 200
    return {
        "operation_id": operation,
        "summary": summary,
        "status_code": status,
        "response_class": MsgspecResponse,
        "responses": responses(
            status, json_content(CommandAnswer), errors, operation=operation, etag=True
        ),
        "openapi_extra": extra,
        "tags": ["commands"],
    }


def register_commands(app: FastAPI) -> None:
    """Add the command routes to ``app``."""

    @app.post(
        "/orders",
        **_route("create_order", "Create an order", (409, 413, 422, 503), CreateOrderRequest),
    )
    async def create_order(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
        # No If-Match: a new order has no version to match, and a used order_id is a 409 anyway.
        raw = await read_body(request, settings_of(request).max_body_bytes)
        body = decode_body(raw, CreateOrderRequest)
        order_id = None if body.order_id is None else validate_id(body.order_id, "order_id")
        ids = command_ids(idempotency_key, None, order_id or "")
        if order_id is None and idempotency_key is not None:
            # Derived from the key, a retried create is the identical command: it answers the
            # original result instead of creating a second order.
            order_id = order_id_for_key(idempotency_key)
        if order_id is not None:
            ids["order_id"] = order_id
        items = [
            OrderItem(
                product_id=line.product_id,
                quantity=read_quantity(line.quantity, f"$.items[{index}].quantity"),
                price=read_price(line.price, f"$.items[{index}].price"),
            )
            for index, line in enumerate(body.items)
        ]
        command = CreateOrder(
            customer_id=body.customer_id,
            items=items,
            shipping_address=Address(**msgspec.structs.asdict(body.shipping_address)),
            **ids,
        )
        return answer(request, await run_command(request, command), 201)

    @app.post(
        "/orders/{order_id}/items",
        **_route("add_item", "Add units of a product", _WITH_BODY, AddItemRequest),
    )
    async def add_item(
        request: Request,
        order_id: OrderId,
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response:
        validate_id(order_id, "order_id")
        ids = command_ids(idempotency_key, if_match, order_id)
        raw = await read_body(request, settings_of(request).max_body_bytes)
        body = decode_body(raw, AddItemRequest)
        command = AddOrderItem(
            order_id=order_id,
            product_id=body.product_id,
            quantity=read_quantity(body.quantity, "$.quantity"),
            price=read_price(body.price, "$.price"),
            **ids,
        )
        return answer(request, await run_command(request, command))

    @app.delete(
        "/orders/{order_id}/items/{product_id}",
        **_route("remove_item", "Remove a product's line", _ON_ORDER),
    )
    async def remove_item(
        request: Request,
        order_id: OrderId,
        product_id: ProductId,
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response:
        validate_id(order_id, "order_id")
        validate_id(product_id, "product_id", aggregate_id=order_id)
        command = RemoveOrderItem(
            order_id=order_id,
            product_id=product_id,
            **command_ids(idempotency_key, if_match, order_id),
        )
        return answer(request, await run_command(request, command))

    @app.post("/orders/{order_id}/ship", **_route("ship_order", "Ship a pending order", _ON_ORDER))
    async def ship_order(
        request: Request,
        order_id: OrderId,
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response:
        validate_id(order_id, "order_id")
        command = ShipOrder(order_id=order_id, **command_ids(idempotency_key, if_match, order_id))
        return answer(request, await run_command(request, command))

    @app.post(
        "/orders/{order_id}/cancel",
        **_route("cancel_order", "Cancel a pending order", _WITH_BODY, CancelRequest),
    )
    async def cancel_order(
        request: Request,
        order_id: OrderId,
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response:
        validate_id(order_id, "order_id")
        ids = command_ids(idempotency_key, if_match, order_id)
        raw = await read_body(request, settings_of(request).max_body_bytes)
        body = decode_body(raw, CancelRequest)
        command = CancelOrder(order_id=order_id, reason=body.reason, **ids)
        return answer(request, await run_command(request, command))
