"""The example domain through a real Engine: stock levels and low stock on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from inventory_kit import BACKENDS, TIMEOUT, Backend, inventory_engine

from actors import Engine
from domain.errors import CommandRejected, InvalidQuery
from examples.inventory.levels import GetStockLevel, LowStock, StockLevel
from examples.inventory.sales import ConfirmOrder, PlaceOrder
from examples.inventory.stock import (
    ReceiveStock,
    ReleaseStock,
    ReservationFailed,
    ReserveStock,
    ShipStock,
)


def stock_a_shop(engine: Engine) -> int:
    """Receive three products, reserve, release and ship some; return the head."""
    for sku, units in (("kettle", 10), ("toaster", 4), ("mug", 2)):
        engine.execute(ReceiveStock(sku=sku, quantity=units))
    engine.execute(ReserveStock(sku="kettle", order_id="so-1", quantity=3))
    engine.execute(ReserveStock(sku="kettle", order_id="so-2", quantity=6))
    engine.execute(ReleaseStock(sku="kettle", order_id="so-2"))
    engine.execute(ReserveStock(sku="toaster", order_id="so-3", quantity=3))
    return engine.execute(ShipStock(sku="toaster", order_id="so-3")).position


@pytest.mark.parametrize("backend", BACKENDS)
def test_stock_levels_follow_receive_reserve_release_and_ship(
    tmp_path: Path, backend: Backend
) -> None:
    with inventory_engine(tmp_path / "data", backend) as engine:
        head = stock_a_shop(engine)
        kettle = engine.query(GetStockLevel("kettle"), after=head, timeout=TIMEOUT)
        toaster = engine.query(GetStockLevel("toaster"), after=head, timeout=TIMEOUT)
        assert kettle == StockLevel("kettle", on_hand=10, reserved=3)
        assert kettle.available == 7
        assert toaster == StockLevel("toaster", on_hand=1, reserved=0)
        assert engine.query(GetStockLevel("nothing"), after=head, timeout=TIMEOUT) is None
        assert engine.status().views["stock_levels"].backend == backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_low_stock_lists_products_at_or_below_the_threshold_fewest_first(
    tmp_path: Path, backend: Backend
) -> None:
    with inventory_engine(tmp_path / "data", backend) as engine:
        head = stock_a_shop(engine)
        low = engine.query(LowStock(threshold=2), after=head, timeout=TIMEOUT)
        assert [(row.sku, row.available) for row in low] == [("toaster", 1), ("mug", 2)]
        assert engine.query(LowStock(threshold=2, limit=1), after=head) == low[:1]
        assert engine.query(LowStock(threshold=0), after=head) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [(LowStock(threshold=-1), "threshold"), (LowStock(limit=0), "limit")],
)
def test_a_malformed_low_stock_query_is_refused_at_once_even_with_after(
    tmp_path: Path, query: LowStock, field: str
) -> None:
    with inventory_engine(tmp_path / "data") as engine:
        with pytest.raises(InvalidQuery) as raised:
            engine.query(query, after=10**9, timeout=TIMEOUT)
        assert raised.value.field == field
        assert engine.status().queries_waiting == 0


def test_a_failed_reservation_is_in_the_log_and_moves_no_stock(tmp_path: Path) -> None:
    with inventory_engine(tmp_path / "data") as engine:
        engine.execute(ReceiveStock(sku="mug", quantity=1))
        failed = engine.execute(ReserveStock(sku="mug", order_id="so-1", quantity=2))
        assert failed.events == (
            ReservationFailed(sku="mug", order_id="so-1", quantity=2, available=1),
        )
        level = engine.query(GetStockLevel("mug"), after=failed.position, timeout=TIMEOUT)
        assert level == StockLevel("mug", on_hand=1, reserved=0)
        with pytest.raises(CommandRejected, match="holds no"):
            engine.execute(ShipStock(sku="mug", order_id="so-1"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rebuild_and_reopen_give_the_same_stock_levels(tmp_path: Path, backend: Backend) -> None:
    path = tmp_path / "data"
    with inventory_engine(path, backend) as engine:
        head = stock_a_shop(engine)
        before = engine.query(LowStock(threshold=100), after=head, timeout=TIMEOUT)
        report = engine.rebuild("stock_levels")
        assert report.events == head
        assert engine.query(LowStock(threshold=100), after=head) == before
    with inventory_engine(path, backend) as engine:
        # After a reopen the view answers from its checkpoint (LMDB) or snapshot (memory).
        assert engine.status().views["stock_levels"].position == head
        assert engine.query(LowStock(threshold=100), after=head, timeout=TIMEOUT) == before


def test_sales_orders_run_next_to_the_stock_in_one_engine(tmp_path: Path) -> None:
    with inventory_engine(tmp_path / "data") as engine:
        placed = engine.execute(PlaceOrder(order_id="so-1", sku="kettle", quantity=1))
        assert placed.version == 1
        confirmed = engine.execute(ConfirmOrder(order_id="so-1"))
        assert confirmed.version == 2
        assert [
            e.stream_type for e in engine.store.read_stream("so-1", stream_type="sales_order")
        ] == [
            "sales_order",
            "sales_order",
        ]
