"""Schema evolution of the example: ``StockReceived`` version 1 and its upcaster to version 2.

Version 1 of ``inventory.StockReceived`` was ``{sku, qty}``. Version 2 renamed ``qty`` to
``quantity`` and added ``lot``. A renamed field cannot be read by defaults alone, so the codec
is told how to turn a version-1 payload into version 2 (:func:`received_v1_to_v2`); records in
the log keep their old bytes and are upcast every time they are read, by the aggregates and the
read models alike. :class:`StockReceivedV1` is the old shape, kept for tests and documentation:
it is never registered in the codec that reads the log.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from examples.inventory.sales import SALES
from examples.inventory.stock import STOCK, StockReceived
from store import Codec

__all__ = [
    "RECEIVED_SCHEMA",
    "StockReceivedV1",
    "inventory_codec",
    "received_v1_to_v2",
]

RECEIVED_SCHEMA: Final = 2
"""The current schema version of ``inventory.StockReceived``."""


class StockReceivedV1(msgspec.Struct, frozen=True, kw_only=True, tag="inventory.StockReceived"):
    """``inventory.StockReceived`` as version 1 wrote it."""

    sku: str
    qty: int


def received_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Return a version-1 ``StockReceived`` payload in the version-2 shape."""
    fields = dict(payload)
    fields["quantity"] = fields.pop("qty")
    fields.setdefault("lot", "")
    return fields


def inventory_codec() -> Codec:
    """Return a codec with every event of the example, ``StockReceived`` at version 2.

    Pass it as ``Engine.open(codec=...)``: the engine registers the deciders' other event types
    at version 1 by itself, but only a codec given to it knows versions and upcasters.
    """
    codec = Codec()
    for event_type in (*STOCK.event_types, *SALES.event_types):
        if event_type is not StockReceived:
            codec.register(event_type)
    codec.register(StockReceived, schema_version=RECEIVED_SCHEMA)
    codec.register_upcaster("inventory.StockReceived", 1, received_v1_to_v2)
    return codec
