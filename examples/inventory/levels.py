"""The ``stock_levels`` read model: one row per product, and the low-stock query.

It keeps on-hand, reserved and available units per sku from the stock's events. It runs on
either backend (memory or LMDB, as ``Engine.open(view_backends=...)`` says); its rows are frozen
Structs, read and computed first, then written (the storage seam's rule).
"""

from __future__ import annotations

from typing import Final

import msgspec

from domain.errors import InvalidQuery
from examples.inventory.stock import (
    StockReceived,
    StockReleased,
    StockReserved,
    StockShipped,
)
from store import RecordedEvent
from views import Storage

__all__ = [
    "MAX_LIMIT",
    "STOCK_LEVELS",
    "GetStockLevel",
    "LowStock",
    "StockLevel",
    "StockLevelsModel",
]

MAX_LIMIT: Final = 1000
"""Most rows a :class:`LowStock` answer holds."""


class GetStockLevel(msgspec.Struct, frozen=True):
    """The stock level of one product (None if it never had stock)."""

    sku: str


class LowStock(msgspec.Struct, frozen=True):
    """Products with at most ``threshold`` units available, fewest first (then by sku).

    ``threshold`` is an int >= 0, ``limit`` an int from 1 to :data:`MAX_LIMIT`.
    """

    threshold: int = 5
    limit: int = 100


class StockLevel(msgspec.Struct, frozen=True):
    """One product's row: units on hand, held by orders, and free."""

    sku: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        """Units on hand that no order holds."""
        return self.on_hand - self.reserved


def _is_int(value: object, low: int, high: int | None = None) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return low <= value and (high is None or value <= high)


class StockLevelsModel:
    """``stock_levels``: implements ``views.ReadModel`` for the stock's events."""

    name: str = "stock_levels"
    tags: frozenset[str] | None = frozenset(
        {
            "inventory.StockReceived",
            "inventory.StockReserved",
            "inventory.StockReleased",
            "inventory.StockShipped",
        }
    )
    query_types: tuple[type, ...] = (GetStockLevel, LowStock)

    def validate(self, query: object) -> None:
        """Refuse a malformed query at once (before any wait for ``after=``)."""
        if not isinstance(query, LowStock):
            return
        if not _is_int(query.threshold, 0):
            raise InvalidQuery("threshold", query.threshold, "an int >= 0")
        if not _is_int(query.limit, 1, MAX_LIMIT):
            raise InvalidQuery("limit", query.limit, f"an int from 1 to {MAX_LIMIT}")

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Fold one stock event into its product's row."""
        rows = storage.table("level", StockLevel)
        event = record.event
        if not isinstance(event, StockReceived | StockReserved | StockReleased | StockShipped):
            return  # a refused reservation moves nothing (``tags`` keeps it out anyway)
        row = rows.get(event.sku) or StockLevel(event.sku, 0, 0)
        on_hand, reserved = row.on_hand, row.reserved
        if isinstance(event, StockReceived):
            on_hand += event.quantity
        elif isinstance(event, StockReserved):
            reserved += event.quantity
        elif isinstance(event, StockReleased):
            reserved -= event.quantity
        else:
            on_hand -= event.quantity
            reserved -= event.quantity
        rows.put(event.sku, StockLevel(event.sku, on_hand, reserved))

    def query(self, storage: Storage, query: object) -> object:
        """Answer a :class:`GetStockLevel` or a :class:`LowStock`."""
        rows = storage.table("level", StockLevel)
        if isinstance(query, GetStockLevel):
            return rows.get(query.sku)
        if isinstance(query, LowStock):
            # A scan of every product: fine for an example; a large catalogue would keep an
            # index by available units instead.
            low = [row for row in rows.values() if row.available <= query.threshold]
            low.sort(key=lambda row: (row.available, row.sku))
            return low[: query.limit]
        raise TypeError(f"unexpected query {type(query).__name__}")


STOCK_LEVELS: Final = StockLevelsModel()
"""The read model, ready for ``Engine.open(views=[...])``."""
