"""The OpenAPI document: every answer a route can give, its headers, and the links between routes.

Routes declare their answers with :func:`responses`; :func:`build_openapi` adds the wire types'
components and tidies what FastAPI generates for optional parameters. The links let a client
(and a stateful tester) follow an order from its creation: read it, add and remove items, ship
or cancel it, list its customer's orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api._schemas import COMPONENTS, ErrorAnswer, json_content

__all__ = ["LINKS", "build_openapi", "responses"]

_ERROR_TEXT: Final = {
    404: (
        "The order does not exist (error: AggregateNotFound), or the path names no route "
        "(error: NotFound; a path id holding '/' or the reserved word 'search')"
    ),
    409: (
        "Well-formed, but it conflicts with the current state: a rule of the order (order_exists, "
        "order_not_pending, item_not_in_order, last_item, price_mismatch, "
        "line_quantity_too_large, order_full: error CommandRejected, the detail names the rule), "
        "a stale If-Match (ConcurrencyConflict), an Idempotency-Key used for another command "
        "(IdempotencyConflict), or ?after= beyond the log's head (AfterBeyondHead)"
    ),
    413: "The body is over 1 MiB (error: BodyTooLarge)",
    422: (
        "Invalid input whatever the state: a body, parameter or header that breaks this schema "
        "(error: InvalidBody, ValidationError, InvalidCommand or InvalidQuery; the detail names "
        "the field and the rule)"
    ),
    503: (
        "Try again: the engine is closed or busy, a commit failed, the command timed out or "
        "a shard is unavailable (retry with the same Idempotency-Key: it never applies twice)"
    ),
}

_ETAG: Final = {
    "description": 'The order\'s version after this answer, as an entity tag ("3").',
    "required": True,
    "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
}
_RETRY_AFTER: Final = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_LOCATION: Final = {
    "description": "The new order's URL (/orders/{order_id}).",
    "required": True,
    "schema": {"type": "string"},
}

_ORDER = "$response.body#/order_id"
_FOUND = "$response.body#/items/0/order_id"
_FOUND_CUSTOMER = "$response.body#/items/0/customer_id"
_VERSION = "$response.header.ETag"
_CHANGES = frozenset({"add_item", "remove_item", "ship_order", "cancel_order"})


def _link(
    operation: str, description: str, body: dict[str, Any] | None = None, **parameters: str
) -> dict[str, Any]:
    # A link to a command on an order the answer just showed also passes the answer's ETag as
    # If-Match: the command applies to that very version (how a client should chain commands).
    if operation in _CHANGES and parameters.get("order_id") == _ORDER:
        parameters = {**parameters, "header.if-match": _VERSION}
    link: dict[str, Any] = {"operationId": operation, "description": description}
    if parameters:
        link["parameters"] = parameters
    if body is not None:
        link["requestBody"] = body
    return link


def _on_order(order: str) -> dict[str, dict[str, Any]]:
    """Links from an answer that names an order (``order``: where its id is)."""
    return {
        "GetOrder": _link("get_order", "Read the order", order_id=order),
        "AddItem": _link("add_item", "Add units of a product", order_id=order),
        "ShipOrder": _link("ship_order", "Ship the order", order_id=order),
        "CancelOrder": _link("cancel_order", "Cancel the order", order_id=order),
    }


def _for_customer(customer: str) -> dict[str, dict[str, Any]]:
    """Links from an answer that names a customer (``customer``: where its id is)."""
    return {
        "CustomerOrders": _link("customer_orders", "The customer's orders", customer_id=customer),
        "NewOrderForCustomer": _link(
            "create_order",
            "Another order for the customer (order_id null: the server picks a new id)",
            body={"customer_id": customer, "order_id": None},
        ),
    }


LINKS: Final[dict[str, dict[str, dict[str, Any]]]] = {
    "create_order": {
        **_on_order(_ORDER),
        "RemoveItem": _link(
            "remove_item",
            "Remove the first line",
            order_id=_ORDER,
            product_id="$request.body#/items/0/product_id",
        ),
        "CustomerOrders": _link(
            "customer_orders", "The customer's orders", customer_id="$request.body#/customer_id"
        ),
    },
    "add_item": {
        **_on_order(_ORDER),
        "RemoveItem": _link(
            "remove_item",
            "Remove the line just added to",
            order_id=_ORDER,
            product_id="$request.body#/product_id",
        ),
    },
    "remove_item": _on_order(_ORDER),
    "ship_order": {"GetOrder": _link("get_order", "Read the order", order_id=_ORDER)},
    "cancel_order": {"GetOrder": _link("get_order", "Read the order", order_id=_ORDER)},
    "get_order": {**_on_order(_ORDER), **_for_customer("$response.body#/customer_id")},
    "search_orders": {
        "GetOrder": _link("get_order", "Read the first order found", order_id=_FOUND),
        **_for_customer(_FOUND_CUSTOMER),
    },
    "customer_orders": {
        "GetOrder": _link("get_order", "Read the customer's newest order", order_id=_FOUND),
        "NewOrderForCustomer": _link(
            "create_order",
            "Another order for the customer (order_id null: the server picks a new id)",
            body={"customer_id": "$request.path.customer_id", "order_id": None},
        ),
    },
}
"""Per operation id, the links of its success answer."""


def responses(
    ok: int,
    content: dict[str, Any],
    errors: Iterable[int],
    *,
    operation: str,
    etag: bool = False,
    stale: Any = None,
) -> dict[int | str, dict[str, Any]]:
    """Return a route's ``responses``: its success answer and the error answers it can give.

    Args:
        ok: The success status.
        content: The success body (:func:`api._schemas.json_content`).
        errors: The error statuses the route can answer, each with the error body.
        operation: The route's operation id (for its links).
        etag: The success answer carries the order's version as ``ETag``.
        stale: The 503 answer's body type when a read's ``?after=`` times out.
    """
    success: dict[str, Any] = {"description": "OK" if ok == 200 else "Created", "content": content}  # noqa: PLR2004
    headers: dict[str, Any] = {}
    if etag:
        headers["ETag"] = _ETAG
    if ok == 201:  # noqa: PLR2004 - HTTP status codes read best as numbers
        headers["Location"] = _LOCATION
    if headers:
        success["headers"] = headers
    if operation in LINKS:
        success["links"] = LINKS[operation]
    answers: dict[int | str, dict[str, Any]] = {ok: success}
    for status in errors:
        body = (
            json_content(ErrorAnswer, stale)
            if status == 503 and stale is not None  # noqa: PLR2004
            else json_content(ErrorAnswer)
        )
        answer: dict[str, Any] = {"description": _ERROR_TEXT[status], "content": body}
        if status == 503:  # noqa: PLR2004
            answer["headers"] = {"Retry-After": _RETRY_AFTER}
        answers[status] = answer
    return answers


def _tidy_parameter(parameter: dict[str, Any]) -> None:
    # FastAPI writes an optional parameter as anyOf [T, null]: a query parameter or a header is
    # either sent as a string or not sent at all, never null.
    schema = parameter.get("schema", {})
    variants = schema.pop("anyOf", None)
    if variants is not None:
        (kept,) = [v for v in variants if v.get("type") != "null"]
        schema.update({**kept, **schema})
    if schema.get("default", 0) is None:
        del schema["default"]


def build_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Return the ``app.openapi`` function: FastAPI's document with our components, tidied."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            # The msgspec wire types document themselves; their $refs point here.
            schema.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
            for path in schema["paths"].values():
                for operation in path.values():
                    for parameter in operation.get("parameters", []):
                        _tidy_parameter(parameter)
            app.openapi_schema = schema
        return app.openapi_schema

    return build
