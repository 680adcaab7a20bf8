"""The order domain's data: value types, commands, events and state (plain msgspec Structs).

Building any of these never raises; every rule is checked by the decider in :mod:`domain.orders`,
which re-exports all public names here (import them from there).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

import msgspec

from domain.ids import MAX_ID_LENGTH, new_id

__all__ = [
    "MAX_FIELD_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_LINES",
    "MAX_PRICE",
    "MAX_PRICE_PLACES",
    "MAX_QUANTITY",
    "MAX_TEXT_LENGTH",
    "STATUSES",
    "AddOrderItem",
    "Address",
    "CancelOrder",
    "CreateOrder",
    "OrderCancelled",
    "OrderCommand",
    "OrderCreated",
    "OrderEvent",
    "OrderItem",
    "OrderItemAdded",
    "OrderItemRemoved",
    "OrderShipped",
    "OrderState",
    "OrderStatus",
    "RemoveOrderItem",
    "ShipOrder",
    "order_total",
]

OrderStatus = Literal["pending", "shipped", "cancelled"]
STATUSES: Final = ("pending", "shipped", "cancelled")

# Limits that keep absurd input out of the log: each is far above any real order. Ids follow the
# engine's one grammar (domain.ids, MAX_ID_LENGTH is its limit); these bound the free text.
MAX_FIELD_LENGTH: Final = 200
"""Longest address field (street, city, postal code, country)."""
MAX_TEXT_LENGTH: Final = 1000
"""Longest cancellation reason."""
MAX_LINES: Final = 500
MAX_QUANTITY: Final = 1_000_000
MAX_PRICE: Final = Decimal(1_000_000_000)
MAX_PRICE_PLACES: Final = 6


# ---------------------------------------------------------------- value types


class OrderItem(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One line of an order: ``quantity`` units of ``product_id`` at ``price`` each."""

    product_id: str
    quantity: int
    price: Decimal


class Address(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A shipping address."""

    street: str
    city: str
    postal_code: str
    country: str


# ---------------------------------------------------------------- commands


class CreateOrder(msgspec.Struct, kw_only=True, tag="CreateOrder"):
    """Create a pending order with at least one item."""

    customer_id: str
    items: list[OrderItem]
    shipping_address: Address
    order_id: str = msgspec.field(default_factory=new_id)
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class AddOrderItem(msgspec.Struct, kw_only=True, tag="AddOrderItem"):
    """Add units of a product to a pending order (same product: quantities add, same price)."""

    order_id: str
    product_id: str
    quantity: int
    price: Decimal
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class RemoveOrderItem(msgspec.Struct, kw_only=True, tag="RemoveOrderItem"):
    """Remove a product's line from a pending order; the last line cannot be removed."""

    order_id: str
    product_id: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class ShipOrder(msgspec.Struct, kw_only=True, tag="ShipOrder"):
    """Ship a pending order."""

    order_id: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class CancelOrder(msgspec.Struct, kw_only=True, tag="CancelOrder"):
    """Cancel a pending order, with a non-empty reason."""

    order_id: str
    reason: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


OrderCommand = CreateOrder | AddOrderItem | RemoveOrderItem | ShipOrder | CancelOrder

# ---------------------------------------------------------------- events
# Tags are part of the log format: never change one. New fields need defaults (msgspec's
# schema-evolution rules); anything else gets a new schema version and an upcaster.


class OrderCreated(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="OrderCreated"):
    """An order was created, with its first items."""

    order_id: str
    customer_id: str
    items: tuple[OrderItem, ...]
    shipping_address: Address
    created_at: datetime


class OrderItemAdded(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="OrderItemAdded"):
    """Units of a product were added to an order."""

    order_id: str
    product_id: str
    quantity: int
    price: Decimal


class OrderItemRemoved(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="OrderItemRemoved"):
    """A product's line was removed from an order."""

    order_id: str
    product_id: str


class OrderShipped(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="OrderShipped"):
    """An order was shipped."""

    order_id: str
    shipped_at: datetime


class OrderCancelled(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="OrderCancelled"):
    """An order was cancelled."""

    order_id: str
    reason: str
    cancelled_at: datetime


OrderEvent = OrderCreated | OrderItemAdded | OrderItemRemoved | OrderShipped | OrderCancelled

# ---------------------------------------------------------------- state


class OrderState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The write model's view of one order. ``status == ""`` means it does not exist yet."""

    order_id: str = ""
    customer_id: str = ""
    status: str = ""
    items: tuple[OrderItem, ...] = ()
    shipping_address: Address | None = None
    created_at: datetime | None = None
    shipped_at: datetime | None = None
    cancel_reason: str = ""


def order_total(items: Sequence[OrderItem]) -> Decimal:
    """Return the exact total of the given lines."""
    return sum((item.price * item.quantity for item in items), Decimal(0))
