"""Inventory: stock per product, sales orders, a stock-level read model and a fulfilment saga.

Built only on the engine's public seams (``domain.decider.Decider``, ``views.ReadModel``,
``store.Codec`` upcasters, ``actors.Saga``); nothing in ``actors/``, ``store/`` or ``views/``
names it. Open an engine over it with::

    Engine.open(path, **inventory_options())

which passes the two deciders, the read model, the codec (with the upcaster) and the saga.
"""

from typing import Any

from examples.inventory.fulfilment import FULFILMENT, OUT_OF_STOCK, Fulfilment
from examples.inventory.levels import (
    STOCK_LEVELS,
    GetStockLevel,
    LowStock,
    StockLevel,
    StockLevelsModel,
)
from examples.inventory.sales import (
    SALES,
    CancelOrder,
    ConfirmOrder,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PlaceOrder,
    SalesDecider,
    SalesOrderState,
    ShipOrder,
)
from examples.inventory.schema import StockReceivedV1, inventory_codec, received_v1_to_v2
from examples.inventory.stock import (
    STOCK,
    ReceiveStock,
    ReleaseStock,
    ReservationFailed,
    ReserveStock,
    ShipStock,
    StockDecider,
    StockReceived,
    StockReleased,
    StockReserved,
    StockShipped,
    StockState,
)

__all__ = [
    "FULFILMENT",
    "OUT_OF_STOCK",
    "SALES",
    "STOCK",
    "STOCK_LEVELS",
    "CancelOrder",
    "ConfirmOrder",
    "Fulfilment",
    "GetStockLevel",
    "LowStock",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderPlaced",
    "OrderShipped",
    "PlaceOrder",
    "ReceiveStock",
    "ReleaseStock",
    "ReservationFailed",
    "ReserveStock",
    "SalesDecider",
    "SalesOrderState",
    "ShipOrder",
    "ShipStock",
    "StockDecider",
    "StockLevel",
    "StockLevelsModel",
    "StockReceived",
    "StockReceivedV1",
    "StockReleased",
    "StockReserved",
    "StockShipped",
    "StockState",
    "inventory_codec",
    "inventory_options",
    "received_v1_to_v2",
]


def inventory_options() -> dict[str, Any]:
    """Return the ``Engine.open`` options of the whole example: deciders, view, codec, saga."""
    return {
        "deciders": [STOCK, SALES],
        "views": [STOCK_LEVELS],
        "codec": inventory_codec(),
        "sagas": [FULFILMENT],
    }
