"""The example's two deciders, tested with the given/when/then kit (no engine)."""

from __future__ import annotations

import pytest

from domain.errors import AggregateNotFound, CommandRejected, InvalidCommand
from domain.testing import for_decider
from examples.inventory.sales import (
    SALES,
    CancelOrder,
    ConfirmOrder,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PlaceOrder,
    ShipOrder,
)
from examples.inventory.stock import (
    STOCK,
    ReceiveStock,
    ReleaseStock,
    ReservationFailed,
    ReserveStock,
    ShipStock,
    StockReceived,
    StockReleased,
    StockReserved,
    StockShipped,
)

stock = for_decider(STOCK)
sales = for_decider(SALES)

received = StockReceived(sku="kettle", quantity=5)
reserved = StockReserved(sku="kettle", order_id="so-1", quantity=3)
placed = OrderPlaced(order_id="so-1", sku="kettle", quantity=3)
confirmed = OrderConfirmed(order_id="so-1", sku="kettle", quantity=3)


# ---------------------------------------------------------------- stock


def test_receiving_stock_puts_units_on_hand() -> None:
    outcome = (
        stock(received)
        .when(ReceiveStock(sku="kettle", quantity=2, lot="L7"))
        .then(StockReceived(sku="kettle", quantity=2, lot="L7"))
    )
    assert outcome.state.on_hand == 7
    assert outcome.state.available == 7


@pytest.mark.parametrize("quantity", [0, -1, True, "3"])
def test_receiving_less_than_one_unit_is_rejected(quantity: object) -> None:
    stock().when(ReceiveStock(sku="kettle", quantity=quantity)).then_rejects(  # type: ignore[arg-type]
        CommandRejected, rule="quantity_below_one"
    )


def test_a_reservation_within_what_is_available_holds_the_units() -> None:
    outcome = (
        stock(received).when(ReserveStock(sku="kettle", order_id="so-1", quantity=3)).then(reserved)
    )
    assert outcome.state.reservations == {"so-1": 3}
    assert outcome.state.available == 2


def test_a_reservation_beyond_what_is_available_is_recorded_as_failed() -> None:
    stock(received, reserved).when(ReserveStock(sku="kettle", order_id="so-2", quantity=3)).then(
        ReservationFailed(sku="kettle", order_id="so-2", quantity=3, available=2)
    )


def test_a_reservation_of_a_product_never_received_fails_with_nothing_available() -> None:
    outcome = (
        stock()
        .when(ReserveStock(sku="kettle", order_id="so-1", quantity=1))
        .then(ReservationFailed(sku="kettle", order_id="so-1", quantity=1, available=0))
    )
    assert outcome.state.exists


def test_reserving_twice_for_one_order_is_rejected() -> None:
    stock(received, reserved).when(
        ReserveStock(sku="kettle", order_id="so-1", quantity=1)
    ).then_rejects(CommandRejected, rule="already_reserved")


def test_a_reservation_for_a_malformed_order_id_is_an_invalid_command() -> None:
    stock(received).when(ReserveStock(sku="kettle", order_id="no/slash", quantity=1)).then_rejects(
        InvalidCommand, rule="invalid_id", aggregate_id="kettle"
    )


def test_releasing_gives_the_held_units_back() -> None:
    outcome = (
        stock(received, reserved)
        .when(ReleaseStock(sku="kettle", order_id="so-1"))
        .then(StockReleased(sku="kettle", order_id="so-1", quantity=3))
    )
    assert outcome.state.on_hand == 5
    assert outcome.state.available == 5


def test_shipping_takes_the_held_units_off_the_shelf() -> None:
    outcome = (
        stock(received, reserved)
        .when(ShipStock(sku="kettle", order_id="so-1"))
        .then(StockShipped(sku="kettle", order_id="so-1", quantity=3))
    )
    assert outcome.state.on_hand == 2
    assert outcome.state.reservations == {}


@pytest.mark.parametrize("command", [ReleaseStock, ShipStock])
def test_release_or_ship_without_a_reservation_is_rejected(
    command: type[ReleaseStock | ShipStock],
) -> None:
    stock(received).when(command(sku="kettle", order_id="so-9")).then_rejects(
        CommandRejected, rule="no_reservation", match="so-9"
    )


def test_release_of_an_unknown_product_is_not_found() -> None:
    stock().when(ReleaseStock(sku="kettle", order_id="so-1")).then_rejects(
        AggregateNotFound, aggregate_id="kettle"
    )


# ---------------------------------------------------------------- sales orders


def test_placing_an_order_records_its_line() -> None:
    outcome = sales().when(PlaceOrder(order_id="so-1", sku="kettle", quantity=3)).then(placed)
    assert outcome.state.status == "placed"


def test_placing_an_order_twice_is_rejected() -> None:
    sales(placed).when(PlaceOrder(order_id="so-1", sku="kettle", quantity=3)).then_rejects(
        CommandRejected, rule="order_exists"
    )


def test_placing_an_order_of_no_units_is_rejected() -> None:
    sales().when(PlaceOrder(order_id="so-1", sku="kettle", quantity=0)).then_rejects(
        CommandRejected, rule="quantity_below_one"
    )


def test_a_placed_order_is_confirmed_then_shipped() -> None:
    sales(placed).when(ConfirmOrder(order_id="so-1")).then(confirmed)
    outcome = (
        sales(placed, confirmed)
        .when(ShipOrder(order_id="so-1"))
        .then(OrderShipped(order_id="so-1", sku="kettle", quantity=3))
    )
    assert outcome.state.status == "shipped"


def test_an_order_cannot_ship_before_it_is_confirmed() -> None:
    sales(placed).when(ShipOrder(order_id="so-1")).then_rejects(
        CommandRejected, rule="order_not_confirmed", match="placed"
    )


def test_cancelling_says_whether_the_order_held_stock() -> None:
    sales(placed).when(CancelOrder(order_id="so-1", reason="changed my mind")).then(
        OrderCancelled(
            order_id="so-1",
            sku="kettle",
            quantity=3,
            reason="changed my mind",
            was_confirmed=False,
        )
    )
    sales(placed, confirmed).when(CancelOrder(order_id="so-1", reason="late")).then(
        OrderCancelled(order_id="so-1", sku="kettle", quantity=3, reason="late", was_confirmed=True)
    )


def test_a_cancelled_order_cannot_be_confirmed_and_a_cancel_needs_a_reason() -> None:
    cancelled = OrderCancelled(
        order_id="so-1", sku="kettle", quantity=3, reason="x", was_confirmed=False
    )
    sales(placed, cancelled).when(ConfirmOrder(order_id="so-1")).then_rejects(
        CommandRejected, rule="order_not_placed"
    )
    sales(placed).when(CancelOrder(order_id="so-1", reason=" ")).then_rejects(
        CommandRejected, rule="empty_reason"
    )


def test_commands_for_an_order_never_placed_are_not_found() -> None:
    sales().when(ConfirmOrder(order_id="so-1")).then_rejects(AggregateNotFound, aggregate_id="so-1")
