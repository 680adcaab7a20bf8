"""The given/when/then kit itself: it passes what holds and fails, readably, what does not."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

import msgspec
import pytest

from domain.errors import AggregateNotFound, CommandRejected, InvalidCommand
from domain.orders import (
    ORDERS,
    Address,
    CancelOrder,
    CreateOrder,
    OrderCancelled,
    OrderCreated,
    OrderItem,
    OrderShipped,
    RemoveOrderItem,
    ShipOrder,
)
from domain.testing import FIXED_NOW, Outcome, for_decider, given

ADDRESS: Final = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")
APPLE: Final = OrderItem(product_id="apple", quantity=1, price=Decimal("1.50"))
CREATED: Final = OrderCreated(
    order_id="o-1",
    customer_id="alice",
    items=(APPLE,),
    shipping_address=ADDRESS,
    created_at=FIXED_NOW,
)
LATER: Final = FIXED_NOW + timedelta(hours=2)
orders = for_decider(ORDERS)


def test_then_passes_on_the_expected_events_and_returns_them_with_the_new_state() -> None:
    outcome = (
        orders(CREATED)
        .when(ShipOrder(order_id="o-1"))
        .then(OrderShipped(order_id="o-1", shipped_at=FIXED_NOW))
    )
    assert isinstance(outcome, Outcome)
    assert outcome.events == (OrderShipped(order_id="o-1", shipped_at=FIXED_NOW),)
    assert outcome.state.status == "shipped"


def test_the_clock_is_fixed_unless_the_scenario_or_the_command_says_otherwise() -> None:
    ship = ShipOrder(order_id="o-1")
    given(CREATED, decider=ORDERS).when(ship).then(
        OrderShipped(order_id="o-1", shipped_at=FIXED_NOW)
    )
    given(CREATED, decider=ORDERS, now=LATER).when(ship).then(
        OrderShipped(order_id="o-1", shipped_at=LATER)
    )
    orders(CREATED).when(ship, now=LATER).then(OrderShipped(order_id="o-1", shipped_at=LATER))


def test_a_wrong_expected_event_fails_showing_both_lists_and_the_differing_field() -> None:
    with pytest.raises(AssertionError) as caught:
        orders(CREATED).when(ShipOrder(order_id="o-1")).then(
            OrderShipped(order_id="o-1", shipped_at=LATER)
        )
    message = str(caught.value)
    assert "given 1 event(s), when ShipOrder(order_id='o-1'" in message
    assert f"expected events:\n  1. {OrderShipped(order_id='o-1', shipped_at=LATER)!r}" in message
    assert f"actual events:\n  1. {OrderShipped(order_id='o-1', shipped_at=FIXED_NOW)!r}" in message
    assert (
        f"first difference: event 1 (OrderShipped), field 'shipped_at': expected {LATER!r}, "
        f"got {FIXED_NOW!r}"
    ) in message


def test_a_wrong_event_type_or_count_is_named_as_such() -> None:
    when = orders(CREATED).when(CancelOrder(order_id="o-1", reason="late"))
    with pytest.raises(AssertionError, match="event 1: expected a OrderShipped, got a Order"):
        when.then(OrderShipped(order_id="o-1", shipped_at=FIXED_NOW))
    with pytest.raises(AssertionError, match=r"expected 0 event\(s\), got 1") as caught:
        when.then()
    assert "expected events:\n  (no events)" in str(caught.value)


def test_then_fails_when_the_command_was_rejected_and_shows_the_error() -> None:
    with pytest.raises(AssertionError) as caught:
        orders().when(ShipOrder(order_id="o-1")).then(
            OrderShipped(order_id="o-1", shipped_at=FIXED_NOW)
        )
    assert "but the command was rejected: AggregateNotFound: " in str(caught.value)
    assert isinstance(caught.value.__cause__, AggregateNotFound)


def test_then_rejects_passes_on_the_error_and_its_attributes_and_returns_it() -> None:
    shipped = OrderShipped(order_id="o-1", shipped_at=FIXED_NOW)
    error = (
        orders(CREATED, shipped)
        .when(ShipOrder(order_id="o-1"))
        .then_rejects(
            CommandRejected, rule="order_not_pending", aggregate_id="o-1", match="shipped"
        )
    )
    assert isinstance(error, CommandRejected)
    # a subclass matches unless exact=True
    remove = RemoveOrderItem(order_id="o-1", product_id="a/b")
    orders(CREATED).when(remove).then_rejects(CommandRejected, rule="invalid_id")
    with pytest.raises(AssertionError, match="expected a rejection with exactly CommandRejected"):
        orders(CREATED).when(remove).then_rejects(CommandRejected, exact=True)
    orders(CREATED).when(remove).then_rejects(InvalidCommand, exact=True)


def test_then_rejects_fails_readably_on_an_accepted_command_or_another_error() -> None:
    with pytest.raises(AssertionError) as caught:
        orders(CREATED).when(ShipOrder(order_id="o-1")).then_rejects(CommandRejected)
    message = str(caught.value)
    assert "expected a rejection with CommandRejected" in message
    assert "but the command was accepted with events:\n  1. OrderShipped(" in message
    with pytest.raises(AssertionError, match="but got AggregateNotFound: "):
        orders().when(ShipOrder(order_id="o-1")).then_rejects(CommandRejected)


def test_then_rejects_fails_on_a_wrong_attribute_or_message() -> None:
    cancelled = OrderCancelled(order_id="o-1", reason="x", cancelled_at=FIXED_NOW)
    when = orders(CREATED, cancelled).when(ShipOrder(order_id="o-1"))
    with pytest.raises(
        AssertionError,
        match=r"CommandRejected\.rule: expected 'last_item', got 'order_not_pending'",
    ):
        when.then_rejects(CommandRejected, rule="last_item")
    with pytest.raises(AssertionError, match="has no attribute 'pid'"):
        when.then_rejects(CommandRejected, pid=1)
    with pytest.raises(AssertionError, match="its message does not match 'shipped'"):
        when.then_rejects(CommandRejected, match="shipped")


class Ping(msgspec.Struct, frozen=True):
    """A command of the broken decider below."""

    command_id: str = "c-1"
    expected_version: int | None = None


class Pinged(msgspec.Struct, frozen=True, tag="test.Pinged"):
    """An event its evolve cannot fold."""


class Broken:
    """A decider whose evolve raises for the very event its decide emits."""

    stream_type: str = "broken"
    command_types: tuple[type, ...] = (Ping,)
    event_types: tuple[type[msgspec.Struct], ...] = (Pinged,)
    state_type: type[int] = int
    state_schema_version: int = 1

    def initial(self) -> int:
        """Zero."""
        return 0

    def aggregate_id(self, command: Ping) -> str:
        """One aggregate."""
        del command
        return "b-1"

    def decide(self, state: int, command: Ping, now: datetime) -> Sequence[Pinged]:
        """Always one event."""
        del state, command, now
        return (Pinged(),)

    def evolve(self, state: int, event: Pinged) -> int:
        """Cannot fold it."""
        raise LookupError(f"cannot fold {event!r} onto {state}")


def test_a_given_event_that_does_not_fold_fails_at_once() -> None:
    with pytest.raises(AssertionError, match=r"given event 1 \(Pinged\(\)\) does not fold"):
        given(Pinged(), decider=Broken())


def test_an_event_decided_but_not_folding_fails_then() -> None:
    with pytest.raises(AssertionError, match=r"event 1 \(Pinged\(\)\) was decided but evolve"):
        given(decider=Broken()).when(Ping()).then(Pinged())


def test_the_fixed_time_is_utc() -> None:
    assert FIXED_NOW.tzinfo is UTC
    created = CreateOrder(
        order_id="o-1", customer_id="alice", items=[APPLE], shipping_address=ADDRESS
    )
    orders().when(created).then(CREATED)
    assert datetime(2024, 1, 1, 12, tzinfo=UTC) == FIXED_NOW
