"""The sales-order aggregate of the example: one line (a sku and a quantity) per order.

An order is *placed* by a customer, then *confirmed* once its stock is reserved (or *cancelled*
when it cannot be), and *shipped* once confirmed. The fulfilment saga
(:mod:`examples.inventory.fulfilment`) drives these steps from the stock's events; this decider
only says which step is allowed when.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal

import msgspec

from domain.errors import AggregateNotFound, CommandRejected
from domain.ids import new_id, validate_id

__all__ = [
    "SALES",
    "CancelOrder",
    "ConfirmOrder",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderPlaced",
    "OrderShipped",
    "PlaceOrder",
    "SalesCommand",
    "SalesDecider",
    "SalesEvent",
    "SalesOrderState",
    "SalesStatus",
    "ShipOrder",
]

SalesStatus = Literal["", "placed", "confirmed", "cancelled", "shipped"]
"""An order's step; ``""`` before it is placed."""

# ---------------------------------------------------------------- commands


class PlaceOrder(msgspec.Struct, kw_only=True):
    """Order ``quantity`` (>= 1) units of ``sku``."""

    order_id: str
    sku: str
    quantity: int
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class ConfirmOrder(msgspec.Struct, kw_only=True):
    """Confirm a placed order (its stock is reserved)."""

    order_id: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class CancelOrder(msgspec.Struct, kw_only=True):
    """Cancel a placed or confirmed order, saying why (non-empty)."""

    order_id: str
    reason: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class ShipOrder(msgspec.Struct, kw_only=True):
    """Ship a confirmed order."""

    order_id: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


SalesCommand = PlaceOrder | ConfirmOrder | CancelOrder | ShipOrder

# ---------------------------------------------------------------- events
# Every event carries the sku and quantity: a saga reacts to one event at a time and keeps no
# state of its own, so what it needs to issue the next command must be in the event.


class OrderPlaced(msgspec.Struct, frozen=True, kw_only=True, tag="sales.OrderPlaced"):
    """An order was placed."""

    order_id: str
    sku: str
    quantity: int


class OrderConfirmed(msgspec.Struct, frozen=True, kw_only=True, tag="sales.OrderConfirmed"):
    """An order's stock is reserved: it will ship."""

    order_id: str
    sku: str
    quantity: int


class OrderCancelled(msgspec.Struct, frozen=True, kw_only=True, tag="sales.OrderCancelled"):
    """An order was cancelled; ``was_confirmed`` says whether it held stock by then."""

    order_id: str
    sku: str
    quantity: int
    reason: str
    was_confirmed: bool


class OrderShipped(msgspec.Struct, frozen=True, kw_only=True, tag="sales.OrderShipped"):
    """An order was shipped."""

    order_id: str
    sku: str
    quantity: int


SalesEvent = OrderPlaced | OrderConfirmed | OrderCancelled | OrderShipped


class SalesOrderState(msgspec.Struct, frozen=True, kw_only=True):
    """One sales order: its step, and its single line."""

    status: SalesStatus = ""
    sku: str = ""
    quantity: int = 0


# ---------------------------------------------------------------- the decider


def _require(state: SalesOrderState, order_id: str, *allowed: SalesStatus) -> None:
    if not state.status:
        raise AggregateNotFound(order_id, "sales_order")
    if state.status not in allowed:
        raise CommandRejected(
            order_id,
            f"order_not_{'_or_'.join(allowed)}",
            f"the order is {state.status}; allowed only when {' or '.join(allowed)}",
        )


class SalesDecider:
    """The sales-order aggregate type (implements ``domain.decider.Decider``)."""

    stream_type: str = "sales_order"
    command_types: tuple[type, ...] = (PlaceOrder, ConfirmOrder, CancelOrder, ShipOrder)
    event_types: tuple[type[msgspec.Struct], ...] = (
        OrderPlaced,
        OrderConfirmed,
        OrderCancelled,
        OrderShipped,
    )
    state_type: type[SalesOrderState] = SalesOrderState
    state_schema_version: int = 1

    def initial(self) -> SalesOrderState:
        """Return an order not placed yet."""
        return SalesOrderState()

    def aggregate_id(self, command: SalesCommand) -> str:
        """Return the order's id."""
        return command.order_id

    def decide(
        self, state: SalesOrderState, command: SalesCommand, now: datetime
    ) -> Sequence[msgspec.Struct]:
        """Check ``command`` against the order; return its events."""
        del now  # the example keeps no time
        order_id = command.order_id
        if isinstance(command, PlaceOrder):
            if state.status:
                raise CommandRejected(order_id, "order_exists", "the order is already placed")
            sku = validate_id(command.sku, "sku", aggregate_id=order_id)
            quantity = command.quantity
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise CommandRejected(order_id, "quantity_below_one", "quantity must be >= 1")
            return (OrderPlaced(order_id=order_id, sku=sku, quantity=quantity),)
        sku, quantity = state.sku, state.quantity
        if isinstance(command, ConfirmOrder):
            _require(state, order_id, "placed")
            return (OrderConfirmed(order_id=order_id, sku=sku, quantity=quantity),)
        if isinstance(command, CancelOrder):
            _require(state, order_id, "placed", "confirmed")
            if not isinstance(command.reason, str) or not command.reason.strip():
                raise CommandRejected(order_id, "empty_reason", "say why the order is cancelled")
            return (
                OrderCancelled(
                    order_id=order_id,
                    sku=sku,
                    quantity=quantity,
                    reason=command.reason,
                    was_confirmed=state.status == "confirmed",
                ),
            )
        _require(state, order_id, "confirmed")
        return (OrderShipped(order_id=order_id, sku=sku, quantity=quantity),)

    def evolve(self, state: SalesOrderState, event: msgspec.Struct) -> SalesOrderState:
        """Return the order after ``event``."""
        if isinstance(event, OrderPlaced):
            return SalesOrderState(status="placed", sku=event.sku, quantity=event.quantity)
        if isinstance(event, OrderConfirmed):
            return msgspec.structs.replace(state, status="confirmed")
        if isinstance(event, OrderCancelled):
            return msgspec.structs.replace(state, status="cancelled")
        if isinstance(event, OrderShipped):
            return msgspec.structs.replace(state, status="shipped")
        return state


SALES: Final = SalesDecider()
"""The sales-order decider, ready for ``Engine.open(deciders=[...])``."""
