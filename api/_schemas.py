"""The HTTP API's wire types: request bodies, answers, and their OpenAPI schemas.

Bodies are msgspec Structs decoded straight from the raw request bytes, so money stays exact: a
``price`` may be a JSON string (``"12.30"``) or a JSON number (``12.30``), and a number is turned
into a ``Decimal`` from its literal digits, never through a float. Unknown fields are refused
(``forbid_unknown_fields``) so a typo never passes silently. The domain checks every rule itself
when the command runs; these types only check the shape.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import msgspec

from actors import EngineStatus
from views.orders import OrderStats, OrderView, Page

__all__ = [
    "COMPONENTS",
    "AddItemRequest",
    "AddressRequest",
    "CommandAnswer",
    "CreateOrderRequest",
    "ErrorAnswer",
    "OrderDetails",
    "OrderItemRequest",
    "StatusAnswer",
    "json_content",
]


class OrderItemRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One line of a new order.

    Attributes:
        product_id: The product.
        quantity: Units, at least 1.
        price: Unit price: a JSON string or number, kept exact (never a float).
    """

    product_id: str
    quantity: int
    price: Decimal


class AddressRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A shipping address."""

    street: str
    city: str
    postal_code: str
    country: str


class CreateOrderRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /orders``.

    Attributes:
        customer_id: Who places the order.
        items: At least one line.
        shipping_address: Where it goes.
        order_id: The new order's id; by default derived from the ``Idempotency-Key`` header
            (so a retry is the same command) or a fresh uuid without one.
    """

    customer_id: str
    items: list[OrderItemRequest]
    shipping_address: AddressRequest
    order_id: str | None = None


class AddItemRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /orders/{order_id}/items``: units of a product to add."""

    product_id: str
    quantity: int
    price: Decimal


class CommandAnswer(msgspec.Struct, frozen=True):
    """What every accepted command answers.

    Attributes:
        order_id: The order the command was aimed at.
        version: The order's version after the command (also sent as the ``ETag``).
        position: Global log position of the command's event: pass it as ``?after=`` to a read
            to see your own write.
    """

    order_id: str
    version: int
    position: int


class OrderDetails(OrderView, frozen=True, gc=False):
    """An order as the read side shows it, plus the write side's ``version`` (also the ETag)."""

    version: int = 0


class StatusAnswer(EngineStatus, frozen=True):
    """Body of ``GET /status``: every field of ``EngineStatus``, plus ``healthy``.

    ``healthy`` is false when a view has an error (stalled on a corrupt record, or retrying after
    its storage failed) or has parked events.
    """

    healthy: bool = True


class ErrorAnswer(msgspec.Struct, frozen=True, omit_defaults=True):
    """Body of every error answer.

    Attributes:
        detail: What went wrong and what to do, in one sentence.
        error: The error's class name (e.g. ``ConcurrencyConflict``).
        stale: True on a consistency timeout: ``result`` holds the answer as of now.
        result: The stale answer (consistency timeouts only).
    """

    detail: str
    error: str = ""
    stale: bool = False
    result: Any = None


_DOCUMENTED: Final = (
    CreateOrderRequest,
    AddItemRequest,
    CommandAnswer,
    OrderDetails,
    Page[OrderView],
    OrderStats,
    StatusAnswer,
    ErrorAnswer,
)
_REF: Final = "#/components/schemas/{name}"
_SCHEMAS, COMPONENTS = msgspec.json.schema_components(_DOCUMENTED, ref_template=_REF)
"""OpenAPI components of every documented wire type (merged into the app's schema)."""
_BY_TYPE: Final[dict[Any, dict[str, Any]]] = dict(zip(_DOCUMENTED, _SCHEMAS, strict=True))


def json_content(wire_type: Any) -> dict[str, Any]:
    """Return an OpenAPI ``content`` object for a JSON body of ``wire_type``."""
    return {"application/json": {"schema": _BY_TYPE[wire_type]}}
