"""The stock aggregate: one stream per product (its sku), written as a pure decider.

Stock is received, reserved for a sales order, released or shipped. A reservation that cannot be
met is not an error but a fact (:class:`ReservationFailed`): a process that asked for it (the
fulfilment saga) must be able to react to the refusal, and a rejected command leaves nothing in
the log to react to. Malformed commands (a quantity below one, a reservation made twice) are
rejected with :class:`~domain.errors.CommandRejected` and write nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

from domain.errors import AggregateNotFound, CommandRejected
from domain.ids import new_id, validate_id

__all__ = [
    "STOCK",
    "ReceiveStock",
    "ReleaseStock",
    "ReservationFailed",
    "ReserveStock",
    "ShipStock",
    "StockCommand",
    "StockDecider",
    "StockEvent",
    "StockReceived",
    "StockReleased",
    "StockReserved",
    "StockShipped",
    "StockState",
]

# ---------------------------------------------------------------- commands


class ReceiveStock(msgspec.Struct, kw_only=True):
    """Put ``quantity`` (>= 1) units of ``sku`` on hand; ``lot`` names the delivery."""

    sku: str
    quantity: int
    lot: str = ""
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class ReserveStock(msgspec.Struct, kw_only=True):
    """Hold ``quantity`` (>= 1) units of ``sku`` for the sales order ``order_id``."""

    sku: str
    order_id: str
    quantity: int
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class ReleaseStock(msgspec.Struct, kw_only=True):
    """Give back the units ``order_id`` holds of ``sku``."""

    sku: str
    order_id: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class ShipStock(msgspec.Struct, kw_only=True):
    """Ship the units ``order_id`` holds of ``sku``: they leave the shelf."""

    sku: str
    order_id: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


StockCommand = ReceiveStock | ReserveStock | ReleaseStock | ShipStock

# ---------------------------------------------------------------- events


class StockReceived(msgspec.Struct, frozen=True, kw_only=True, tag="inventory.StockReceived"):
    """Units arrived (schema version 2: ``quantity`` was ``qty`` in version 1, ``lot`` is new).

    See :mod:`examples.inventory.schema` for the upcaster that reads version 1.
    """

    sku: str
    quantity: int
    lot: str = ""


class StockReserved(msgspec.Struct, frozen=True, kw_only=True, tag="inventory.StockReserved"):
    """Units are held for a sales order."""

    sku: str
    order_id: str
    quantity: int


class ReservationFailed(
    msgspec.Struct, frozen=True, kw_only=True, tag="inventory.ReservationFailed"
):
    """A reservation could not be met: only ``available`` units were free."""

    sku: str
    order_id: str
    quantity: int
    available: int


class StockReleased(msgspec.Struct, frozen=True, kw_only=True, tag="inventory.StockReleased"):
    """A sales order's held units are free again."""

    sku: str
    order_id: str
    quantity: int


class StockShipped(msgspec.Struct, frozen=True, kw_only=True, tag="inventory.StockShipped"):
    """A sales order's held units left the shelf."""

    sku: str
    order_id: str
    quantity: int


StockEvent = StockReceived | StockReserved | ReservationFailed | StockReleased | StockShipped


class StockState(msgspec.Struct, frozen=True, kw_only=True):
    """One product's stock: units on hand and the units each sales order holds.

    Attributes:
        exists: Whether the stream has any event.
        on_hand: Units on the shelf (held ones included).
        reservations: Units held, by sales order id.
    """

    exists: bool = False
    on_hand: int = 0
    reservations: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def available(self) -> int:
        """Units on hand that no order holds."""
        return self.on_hand - sum(self.reservations.values())


# ---------------------------------------------------------------- the decider


def _check_quantity(sku: str, quantity: object) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise CommandRejected(sku, "quantity_below_one", "quantity must be an int >= 1")


def _held(state: StockState, sku: str, order_id: str) -> int:
    if not state.exists:
        raise AggregateNotFound(sku, "stock")
    held = state.reservations.get(order_id)
    if held is None:
        raise CommandRejected(sku, "no_reservation", f"order {order_id!r} holds no {sku!r}")
    return held


class StockDecider:
    """The stock aggregate type (implements ``domain.decider.Decider``)."""

    stream_type: str = "stock"
    command_types: tuple[type, ...] = (ReceiveStock, ReserveStock, ReleaseStock, ShipStock)
    event_types: tuple[type[msgspec.Struct], ...] = (
        StockReceived,
        StockReserved,
        ReservationFailed,
        StockReleased,
        StockShipped,
    )
    state_type: type[StockState] = StockState
    state_schema_version: int = 1

    def initial(self) -> StockState:
        """Return a product with no stock and no history."""
        return StockState()

    def aggregate_id(self, command: StockCommand) -> str:
        """Return the product's sku: one stream per product."""
        return command.sku

    def decide(
        self, state: StockState, command: StockCommand, now: datetime
    ) -> Sequence[msgspec.Struct]:
        """Check ``command`` against the product's stock; return its events."""
        del now  # stock keeps no time
        sku = command.sku
        if isinstance(command, ReceiveStock):
            _check_quantity(sku, command.quantity)
            return (StockReceived(sku=sku, quantity=command.quantity, lot=command.lot),)
        order_id = validate_id(command.order_id, "order_id", aggregate_id=sku)
        if isinstance(command, ReserveStock):
            _check_quantity(sku, command.quantity)
            if order_id in state.reservations:
                raise CommandRejected(sku, "already_reserved", f"order {order_id!r} holds {sku}")
            if command.quantity > state.available:
                # A fact, not an error: the saga that asked must see the refusal in the log.
                return (
                    ReservationFailed(
                        sku=sku,
                        order_id=order_id,
                        quantity=command.quantity,
                        available=state.available,
                    ),
                )
            return (StockReserved(sku=sku, order_id=order_id, quantity=command.quantity),)
        held = _held(state, sku, order_id)
        if isinstance(command, ReleaseStock):
            return (StockReleased(sku=sku, order_id=order_id, quantity=held),)
        return (StockShipped(sku=sku, order_id=order_id, quantity=held),)

    def evolve(self, state: StockState, event: msgspec.Struct) -> StockState:
        """Return the stock after ``event`` (a new state: ``state`` is never changed)."""
        if isinstance(event, StockReceived):
            return msgspec.structs.replace(
                state, exists=True, on_hand=state.on_hand + event.quantity
            )
        if isinstance(event, StockReserved):
            held = {**state.reservations, event.order_id: event.quantity}
            return msgspec.structs.replace(state, exists=True, reservations=held)
        if isinstance(event, ReservationFailed):
            return msgspec.structs.replace(state, exists=True)
        if isinstance(event, StockReleased | StockShipped):
            held = {k: v for k, v in state.reservations.items() if k != event.order_id}
            on_hand = state.on_hand - (event.quantity if isinstance(event, StockShipped) else 0)
            return msgspec.structs.replace(state, on_hand=on_hand, reservations=held)
        return state


STOCK: Final = StockDecider()
"""The stock decider, ready for ``Engine.open(deciders=[...])``."""
