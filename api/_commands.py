"""The command routes: create, add and remove items, ship, cancel."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import FastAPI, Query, Request, Response

from api._body import decode_body, order_id_for_key, read_body
from api._common import (
    ERRORS,
    IdempotencyKey,
    IfMatch,
    answer,
    body_doc,
    command_ids,
    run_command,
    settings_of,
)
from api._errors import MsgspecResponse
from api._schemas import AddItemRequest, CommandAnswer, CreateOrderRequest, json_content
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


def register_commands(app: FastAPI) -> None:
    """Add the command routes to ``app``."""
    accepted = {"description": "Accepted", "content": json_content(CommandAnswer)}
    common: dict[str, Any] = {
        "response_class": MsgspecResponse,
        "responses": {**ERRORS, 200: accepted},
        "tags": ["commands"],
    }

    @app.post(
        "/orders",
        status_code=201,
        summary="Create an order",
        openapi_extra=body_doc(CreateOrderRequest),
        response_class=MsgspecResponse,
        responses={**ERRORS, 201: accepted},
        tags=["commands"],
    )
    async def create_order(
        request: Request, idempotency_key: IdempotencyKey = None, if_match: IfMatch = None
    ) -> Response:
        raw = await read_body(request, settings_of(request).max_body_bytes)
        body = decode_body(raw, CreateOrderRequest)
        ids = command_ids(idempotency_key, if_match)
        if body.order_id is not None:
            ids["order_id"] = body.order_id
        elif idempotency_key is not None:
            # Derived from the key, a retried create is the identical command: it answers the
            # original result instead of creating a second order.
            ids["order_id"] = order_id_for_key(idempotency_key)
        command = CreateOrder(
            customer_id=body.customer_id,
            items=[
                OrderItem(product_id=line.product_id, quantity=line.quantity, price=line.price)
                for line in body.items
            ],
            shipping_address=Address(**msgspec.structs.asdict(body.shipping_address)),
            **ids,
        )
        return answer(await run_command(request, command), 201)

    @app.post(
        "/orders/{order_id}/items",
        summary="Add units of a product",
        openapi_extra=body_doc(AddItemRequest),
        **common,
    )
    async def add_item(
        request: Request,
        order_id: str,
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response:
        raw = await read_body(request, settings_of(request).max_body_bytes)
        body = decode_body(raw, AddItemRequest)
        command = AddOrderItem(
            order_id=order_id,
            product_id=body.product_id,
            quantity=body.quantity,
            price=body.price,
            **command_ids(idempotency_key, if_match),
        )
        return answer(await run_command(request, command))

    @app.delete(
        "/orders/{order_id}/items/{product_id}", summary="Remove a product's line", **common
    )
    async def remove_item(
        request: Request,
        order_id: str,
        product_id: str,
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response:
        command = RemoveOrderItem(
            order_id=order_id, product_id=product_id, **command_ids(idempotency_key, if_match)
        )
        return answer(await run_command(request, command))

    @app.post("/orders/{order_id}/ship", summary="Ship a pending order", **common)
    async def ship_order(
        request: Request,
        order_id: str,
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response:
        command = ShipOrder(order_id=order_id, **command_ids(idempotency_key, if_match))
        return answer(await run_command(request, command))

    @app.delete("/orders/{order_id}", summary="Cancel a pending order", **common)
    async def cancel_order(
        request: Request,
        order_id: str,
        reason: Annotated[str, Query(description="Why the order is cancelled (required).")],
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response:
        command = CancelOrder(
            order_id=order_id, reason=reason, **command_ids(idempotency_key, if_match)
        )
        return answer(await run_command(request, command))
