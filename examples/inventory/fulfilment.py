"""The fulfilment saga: joins sales orders and stock, one event at a time.

=================================  ==========================================
When this is committed             the saga issues
=================================  ==========================================
``OrderPlaced``                    ``ReserveStock`` for the order's line
``StockReserved``                  ``ConfirmOrder``
``ReservationFailed``              ``CancelOrder`` (reason :data:`OUT_OF_STOCK`)
``OrderShipped``                   ``ShipStock`` (the held units leave the shelf)
``OrderCancelled`` once confirmed  ``ReleaseStock`` (the held units are free again)
=================================  ==========================================

``react`` is pure: it reads only the event (every event carries what the next command needs),
keeps no state and returns plain commands. The engine gives each command an id derived from the
event's position, so a restart in the middle of a flow re-issues nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from examples.inventory.sales import CancelOrder, ConfirmOrder, OrderCancelled, OrderPlaced
from examples.inventory.sales import OrderShipped as SalesOrderShipped
from examples.inventory.stock import (
    ReleaseStock,
    ReservationFailed,
    ReserveStock,
    ShipStock,
    StockReserved,
)
from store import RecordedEvent

__all__ = ["FULFILMENT", "OUT_OF_STOCK", "Fulfilment"]

OUT_OF_STOCK: Final = "out of stock"
"""The reason of an order the saga cancels because its reservation failed."""


class Fulfilment:
    """The saga (implements ``actors.Saga``): places reservations, confirms, cancels, ships."""

    name: str = "fulfilment"
    tags: frozenset[str] | None = frozenset(
        {
            "sales.OrderPlaced",
            "sales.OrderShipped",
            "sales.OrderCancelled",
            "inventory.StockReserved",
            "inventory.ReservationFailed",
        }
    )

    def react(self, record: RecordedEvent) -> Sequence[Any]:
        """Return the commands that follow ``record``'s event (see the module's table)."""
        event = record.event
        if isinstance(event, OrderPlaced):
            return [ReserveStock(sku=event.sku, order_id=event.order_id, quantity=event.quantity)]
        if isinstance(event, StockReserved):
            return [ConfirmOrder(order_id=event.order_id)]
        if isinstance(event, ReservationFailed):
            return [CancelOrder(order_id=event.order_id, reason=OUT_OF_STOCK)]
        if isinstance(event, SalesOrderShipped):
            return [ShipStock(sku=event.sku, order_id=event.order_id)]
        if isinstance(event, OrderCancelled) and event.was_confirmed:
            return [ReleaseStock(sku=event.sku, order_id=event.order_id)]
        return []


FULFILMENT: Final = Fulfilment()
"""The saga, ready for ``Engine.open(sagas=[...])``."""
