"""What every order read model shares: one :class:`~views._order_rows.OrderRow` per order.

Each model folds the row from the events by :func:`~views._order_rows.evolve`, computed once per
event for all of them (:func:`~views._order_rows.shared_evolve`), and writes it with what depends
on it (``_write``). A rebuild folds the rows first (:data:`~views._order_fold.ORDER_FOLD`) and has
each model write every order's final row once (``apply_row``).
"""

from __future__ import annotations

from typing import Final

from store import RecordedEvent
from views._order_fold import ORDER_FOLD
from views._order_rows import ORDER_EVENTS, ORDER_TAGS, OrderEvent, OrderRow, shared_evolve
from views._view import Backend, RowFold, Storage, Table

__all__ = ["OrderRowsModel", "unexpected"]


def unexpected(query: object) -> TypeError:
    """Return the error for a query of a type the model does not answer."""
    return TypeError(f"unexpected query {type(query).__name__}")


class OrderRowsModel:
    """Shared by the views that keep one :class:`OrderRow` per order."""

    tags: frozenset[str] | None = ORDER_TAGS
    # 2: order lines keep their price as text (RowLine); 3: rows are flat (OrderRow). Rows of
    # another version are not read back.
    version: int = 3
    # In memory unless said otherwise: rebuilt from the log at open (from a snapshot, then the
    # tail); search scans every order and stats are small, both fastest as plain objects.
    default_backend: Backend = "memory"
    # A rebuild folds every order's row once for all the order views, then each writes it.
    row_fold: RowFold = ORDER_FOLD
    _TABLE: Final = "order"

    def __init__(self, name: str) -> None:
        self.name = name

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Fold ``record`` into its order's row and write what changes."""
        orders = self._orders(storage)
        folded = self._fold(orders, record)
        if folded is not None:
            self._write(storage, orders, *folded)

    def apply_row(self, storage: Storage, row: OrderRow) -> None:
        """Write ``row``, an order's row folded by a rebuild, as its events would have."""
        orders = self._orders(storage)
        self._write(storage, orders, orders.get(row.order_id), row, None)

    def _write(
        self,
        storage: Storage,
        orders: Table[OrderRow],
        old: OrderRow | None,
        new: OrderRow,
        event: OrderEvent | None,
    ) -> None:
        """Write the order's ``new`` row (``old`` before it) and whatever depends on it.

        ``event`` is the event folded (None for a row folded by a rebuild): some models take a
        shortcut from it.
        """
        raise NotImplementedError

    def _fold(
        self, orders: Table[OrderRow], record: RecordedEvent
    ) -> tuple[OrderRow | None, OrderRow, OrderEvent] | None:
        """Return (old row, new row, event), or None if ``record`` is not an order event."""
        event = record.event
        if not isinstance(event, ORDER_EVENTS):
            return None  # another aggregate's event: not ours (the tag filter usually drops it)
        old = orders.get(event.order_id)
        return old, shared_evolve(old, event, record.position), event

    def _orders(self, storage: Storage) -> Table[OrderRow]:
        return storage.table(self._TABLE, OrderRow)

    def _row(self, storage: Storage, order_id: str) -> OrderRow:
        row = self._orders(storage).get(order_id)
        if row is None:  # pragma: no cover - an index entry always has its row (same txn)
            raise LookupError(f"view {self.name!r}: indexed order {order_id!r} has no row")
        return row
