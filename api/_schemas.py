"""The HTTP API's wire types: request bodies, answers, and their OpenAPI schemas.

Bodies are msgspec Structs decoded straight from the raw request bytes. Every rule the server
enforces on a body is on these types, so the published schema is exactly what is accepted:
ids follow the engine's one grammar (:data:`domain.ids.ID_PATTERN`), quantities and line counts
have their bounds, texts must not be blank, unknown fields are refused. A ``price`` is kept as
raw JSON and read by :func:`api._numbers.read_price`: a string of :data:`PRICE_PATTERN`, or a JSON
number read from its literal digits (never through a float), both exact.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import msgspec

from actors import EngineStatus
from domain.ids import ID_GRAMMAR, ID_PATTERN
from domain.orders import (
    MAX_FIELD_LENGTH,
    MAX_LINES,
    MAX_PRICE,
    MAX_PRICE_PLACES,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    STATUSES,
)
from views.orders import OrderStats, OrderView, Page

__all__ = [
    "AMOUNT_PATTERN",
    "COMPONENTS",
    "EXAMPLES",
    "NOT_BLANK",
    "PRICE_PATTERN",
    "AddItemRequest",
    "AddressRequest",
    "CancelRequest",
    "CommandAnswer",
    "CreateOrderRequest",
    "ErrorAnswer",
    "Id",
    "OrderDetails",
    "OrderItemRequest",
    "StaleAnswer",
    "StaleOrder",
    "StalePage",
    "StaleStats",
    "StatsAnswer",
    "StatusAnswer",
    "json_content",
    "schema_of",
]

PRICE_PATTERN: Final = (
    rf"^(?:[0-9]{{1,9}}(?:\.[0-9]{{1,{MAX_PRICE_PLACES}}})?"
    rf"|{int(MAX_PRICE)}(?:\.0{{1,{MAX_PRICE_PLACES}}})?)$"
)
"""A price as a string: 0 to 1,000,000,000 with at most 6 decimal places (``"12.30"``)."""

AMOUNT_PATTERN: Final = rf"^[0-9]{{1,18}}(?:\.[0-9]{{1,{MAX_PRICE_PLACES}}})?$"
"""A total bound of a search (``min_total``/``max_total``): a non-negative decimal string."""

NOT_BLANK: Final = (
    r"[^\t-\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
)
"""A text holds a character that is not a space: by Python's definition (``str.strip``, which
the domain applies) and by ECMAScript's (JSON Schema validators), written out as one class so
both read it alike."""

PRICE_SCHEMA: Final[dict[str, Any]] = {
    "description": (
        "Unit price, exact: a decimal string (preferred) or a JSON number read from its digits, "
        f"never as a float; 0 to {int(MAX_PRICE)}, at most {MAX_PRICE_PLACES} decimal places."
    ),
    "anyOf": [
        {"type": "string", "pattern": PRICE_PATTERN, "examples": ["12.30"]},
        {
            "type": "number",
            "minimum": 0,
            "maximum": int(MAX_PRICE),
            "multipleOf": float(Decimal(1).scaleb(-MAX_PRICE_PLACES)),
        },
    ],
}

# Published here, checked by the engine's one id check (domain.ids) so that the 422 says which
# rule of the grammar the id breaks (msgspec's own check would only quote the regex).
Id = Annotated[
    str,
    msgspec.Meta(description=f"An id: {ID_GRAMMAR}.", extra_json_schema={"pattern": ID_PATTERN}),
]
# Raw, read by api._numbers.read_quantity: JSON Schema's integer includes 3.0, msgspec's int not.
Quantity = Annotated[
    msgspec.Raw,
    msgspec.Meta(
        extra_json_schema={
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_QUANTITY,
            "description": "Units of the product, at least 1.",
        }
    ),
]
Price = Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema=PRICE_SCHEMA)]
AddressField = Annotated[str, msgspec.Meta(pattern=NOT_BLANK, max_length=MAX_FIELD_LENGTH)]


_ADDRESS_EXAMPLE: Final = {
    "street": "1 Main St",
    "city": "Lyon",
    "postal_code": "69001",
    "country": "FR",
}
_LINE_EXAMPLE: Final = {"product_id": "kettle", "quantity": 1, "price": "39.90"}
EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "CreateOrderRequest": {
        "customer_id": "customer-7",
        "items": [_LINE_EXAMPLE],
        "shipping_address": _ADDRESS_EXAMPLE,
        "order_id": "order-1",
    },
    "AddItemRequest": {"product_id": "mug", "quantity": 2, "price": "9.50"},
    "CancelRequest": {"reason": "the customer changed their mind"},
}
"""An example body per request type, shown in /docs and sent by Schemathesis' examples phase."""


class OrderItemRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One line of a new order: units of a product at a unit price.

    Lines of the same product add up (their prices must be equal, or the answer is a 409
    ``price_mismatch``; a merged line over the quantity limit is a 409 too).
    """

    product_id: Id
    quantity: Quantity
    price: Price


class AddressRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A shipping address (no field blank)."""

    street: AddressField
    city: AddressField
    postal_code: AddressField
    country: AddressField


class CreateOrderRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /orders``.

    Attributes:
        customer_id: Who places the order.
        items: At least one line.
        shipping_address: Where it goes.
        order_id: The new order's id; by default derived from the ``Idempotency-Key`` header
            (so a retry is the same command) or a fresh uuid without one.
    """

    customer_id: Id
    items: Annotated[list[OrderItemRequest], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    shipping_address: AddressRequest
    order_id: Id | None = None


class AddItemRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /orders/{order_id}/items``: units of a product to add."""

    product_id: Id
    quantity: Quantity
    price: Price


class CancelRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /orders/{order_id}/cancel``: why the order is cancelled (not blank)."""

    reason: Annotated[str, msgspec.Meta(pattern=NOT_BLANK, max_length=MAX_TEXT_LENGTH)]


class CommandAnswer(msgspec.Struct, frozen=True):
    """What every accepted command answers.

    Attributes:
        order_id: The order the command was aimed at.
        version: The order's version after the command (also sent as the ``ETag``).
        position: The command's read position: pass it as ``?after=`` to a read to see your own
            write. On one engine, the global log position of its last event; on a sharded
            server, ``p * shards + shard`` with ``p`` the position in that shard's log.
    """

    order_id: str
    version: int
    position: int


class OrderDetails(OrderView, frozen=True, gc=False):
    """An order as the read side shows it, plus the write side's ``version`` (also the ETag)."""

    version: int = 0


class StatusAnswer(EngineStatus, frozen=True):
    """Body of ``GET /status``: every field of ``EngineStatus``, plus ``healthy`` and ``shards``.

    ``healthy`` is false when a view has an error (stalled on a corrupt record, or retrying after
    its storage failed) or has parked events. On a sharded server (``serve --shards N``) the
    fields sum every shard's (``head``: the events in every shard's log; lags and delays: the
    worst shard's), ``healthy`` holds for every shard, and ``shards`` maps each shard's index
    to its own status; on one engine ``shards`` is null.
    """

    healthy: bool = True
    shards: dict[str, EngineStatus] | None = None


class ErrorAnswer(msgspec.Struct, frozen=True):
    """Body of every error answer.

    Attributes:
        detail: What went wrong and what to do, in one sentence.
        error: The error's name: an engine error's class (``ConcurrencyConflict``,
            ``CommandRejected``...), ``InvalidBody``, ``ValidationError`` (a parameter),
            ``BodyTooLarge``, ``NotFound``, ``MethodNotAllowed`` or ``BadRequest``.
    """

    detail: str
    error: str


class TopProduct(msgspec.Struct, frozen=True):
    """A product and how many units of it the orders that are not cancelled hold."""

    product_id: str
    units: int


class StatusCounts(msgspec.Struct, frozen=True):
    """How many orders have each status."""

    pending: int
    shipped: int
    cancelled: int


class StatsAnswer(msgspec.Struct, frozen=True):
    """Body of ``GET /stats``: :class:`views.orders.OrderStats` as JSON objects.

    Attributes:
        total_orders: How many orders exist.
        by_status: Orders per status.
        revenue: Sum of the totals of shipped orders (exact decimal string).
        top_products: Up to 10 products, most units first, ties by product id.
    """

    total_orders: int
    by_status: StatusCounts
    revenue: Decimal
    top_products: list[TopProduct]

    @classmethod
    def of(cls, stats: OrderStats) -> StatsAnswer:
        """Return the wire form of ``stats`` (its pairs become objects: any client reads them)."""
        return cls(
            total_orders=stats.total_orders,
            by_status=msgspec.convert(stats.by_status, StatusCounts),
            revenue=stats.revenue,
            top_products=[TopProduct(product, units) for product, units in stats.top_products],
        )


class StaleAnswer(msgspec.Struct, frozen=True):
    """A 503 to a read whose ``?after=`` position was not reached in time.

    Attributes:
        detail: Which view, and the position it reached.
        error: ``ConsistencyTimeout``.
        stale: Always true: ``result`` is the answer as of now, older than asked.
        result: The query's answer as of now.
    """

    detail: str
    error: Literal["ConsistencyTimeout"]
    stale: Literal[True]
    result: Any


class StaleOrder(StaleAnswer, frozen=True):
    """A 503 to ``GET /orders/{order_id}?after=``: the order as of now (null: not seen yet)."""

    result: OrderView | None


class StalePage(StaleAnswer, frozen=True):
    """A 503 to a page with ``?after=``: the page as of now."""

    result: Page[OrderView]


class StaleStats(StaleAnswer, frozen=True):
    """A 503 to ``GET /stats?after=``: the figures as of now."""

    result: StatsAnswer


_DOCUMENTED: Final = (
    CreateOrderRequest,
    AddItemRequest,
    CancelRequest,
    CommandAnswer,
    OrderDetails,
    Page[OrderView],
    StatsAnswer,
    StatusAnswer,
    ErrorAnswer,
    StaleOrder,
    StalePage,
    StaleStats,
)
_REF: Final = "#/components/schemas/{name}"
_SCHEMAS, COMPONENTS = msgspec.json.schema_components(_DOCUMENTED, ref_template=_REF)
"""OpenAPI components of every documented wire type (merged into the app's schema)."""
_BY_TYPE: Final[dict[Any, dict[str, Any]]] = dict(zip(_DOCUMENTED, _SCHEMAS, strict=True))


# The read side types `status` and `durability` as plain strings; on the wire they are enums.
for _name in ("OrderView", "OrderDetails"):
    COMPONENTS[_name]["properties"]["status"]["enum"] = list(STATUSES)
COMPONENTS["StatusAnswer"]["properties"]["durability"]["enum"] = ["sync", "async"]
for _name, _example in EXAMPLES.items():
    COMPONENTS[_name]["examples"] = [_example]


def schema_of(wire_type: Any) -> dict[str, Any]:
    """Return the OpenAPI schema (a ``$ref``) of a documented wire type."""
    return _BY_TYPE[wire_type]


def json_content(*wire_types: Any) -> dict[str, Any]:
    """Return an OpenAPI ``content`` object for a JSON body of any of ``wire_types``."""
    schemas = [_BY_TYPE[wire_type] for wire_type in wire_types]
    return {"application/json": {"schema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}}}
