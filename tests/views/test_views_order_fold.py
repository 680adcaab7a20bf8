"""A rebuild's order fold (``views._order_fold.ORDER_FOLD``) folds what ``evolve`` folds."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from views_kit import check_answers, open_rig, random_log

from domain.orders import (
    Address,
    OrderCancelled,
    OrderCreated,
    OrderItem,
    OrderItemAdded,
    OrderItemRemoved,
    OrderShipped,
)
from store import RecordedEvent
from views import Backend
from views._order_fold import ORDER_FOLD
from views._order_rows import ORDER_EVENTS, OrderEvent, OrderRow, evolve

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_ADDRESS = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")

# Prices with every exponent a log may hold (1, 1.5, 1.50, 0.001...): the total's digits must
# match evolve's, not only its value.
_PRICES = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places), st.integers(0, 5000), st.integers(0, 3)
)
_ORDERS = st.sampled_from(["O1", "O2", "O3"])
_PRODUCTS = st.sampled_from(["p1", "p2", "p3", "p4"])
_ITEMS = st.builds(
    lambda product, quantity, price: OrderItem(product_id=product, quantity=quantity, price=price),
    _PRODUCTS,
    st.integers(1, 5),
    _PRICES,
)

# Any sequence of order events, not only what the decider accepts: a second creation, events
# of an order never created, a creation repeating a product, removals of absent products, a
# shipped order cancelled. A log written by older code or another decider may hold them all.
_EVENTS: st.SearchStrategy[OrderEvent] = st.one_of(
    st.builds(
        lambda order, customer, items, minutes: OrderCreated(
            order_id=order,
            customer_id=customer,
            items=tuple(items),
            shipping_address=_ADDRESS,
            created_at=_EPOCH + timedelta(minutes=minutes),
        ),
        _ORDERS,
        st.sampled_from(["C1", "C2"]),
        st.lists(_ITEMS, min_size=1, max_size=4),
        st.integers(0, 100),
    ),
    st.builds(
        lambda order, item: OrderItemAdded(
            order_id=order, product_id=item.product_id, quantity=item.quantity, price=item.price
        ),
        _ORDERS,
        _ITEMS,
    ),
    st.builds(
        lambda order, product: OrderItemRemoved(order_id=order, product_id=product),
        _ORDERS,
        _PRODUCTS,
    ),
    st.builds(
        lambda order, minutes: OrderShipped(
            order_id=order, shipped_at=_EPOCH + timedelta(minutes=minutes)
        ),
        _ORDERS,
        st.integers(0, 100),
    ),
    st.builds(
        lambda order: OrderCancelled(order_id=order, reason="no", cancelled_at=_EPOCH), _ORDERS
    ),
)


def _records(events: list[OrderEvent]) -> list[RecordedEvent]:
    return [
        RecordedEvent(
            position=position,
            stream_id=event.order_id,
            stream_type="order",
            version=1,
            tag=str(type(event).__struct_config__.tag),
            schema_version=1,
            timestamp=position,
            command_id="",
            event=event,
        )
        for position, event in enumerate(events, 1)
    ]


def _by_evolve(records: list[RecordedEvent]) -> tuple[dict[str, OrderRow], dict[int, str]]:
    rows: dict[str, OrderRow] = {}
    poison: dict[int, str] = {}
    for record in records:
        event = record.event
        assert isinstance(event, ORDER_EVENTS)
        try:
            rows[event.order_id] = evolve(rows.get(event.order_id), event, record.position)
        except ValueError as error:
            poison[record.position] = str(error)
    return rows, poison


def _by_fold(
    records: list[RecordedEvent], cuts: list[int]
) -> tuple[dict[str, OrderRow], dict[int, str]]:
    states: dict[str, Any] = {}
    poison: dict[int, str] = {}
    start = 0
    for cut in [*sorted(cuts), len(records)]:
        for record, error in ORDER_FOLD.fold(states, records[start:cut]):
            poison[record.position] = str(error)
        start = max(start, cut)
    return {row.order_id: row for row in ORDER_FOLD.rows(states)}, poison


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_EVENTS, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=4),
)
def test_the_fold_gives_evolves_rows_and_refuses_what_it_refuses(
    events: list[OrderEvent], cuts: list[int]
) -> None:
    records = _records(events)
    expected_rows, expected_poison = _by_evolve(records)
    rows, poison = _by_fold(records, cuts)
    assert poison == expected_poison  # the same events, with the same messages
    # Bytes, not ==: a Decimal's exponent (10.0 vs 10.00) would differ unseen by ==.
    assert {key: msgspec.msgpack.encode(row) for key, row in rows.items()} == {
        key: msgspec.msgpack.encode(row) for key, row in expected_rows.items()
    }
    assert list(rows) == list(expected_rows)  # in the order the orders were created


def test_events_of_other_aggregates_are_left_alone() -> None:
    created = OrderCreated(
        order_id="O1",
        customer_id="C1",
        items=(OrderItem(product_id="p1", quantity=1, price=Decimal("2.50")),),
        shipping_address=_ADDRESS,
        created_at=_EPOCH,
    )
    records = _records([created])
    other = msgspec.structs.replace(records[0], position=2, tag="Other", event=_ADDRESS)
    states: dict[str, Any] = {}
    assert ORDER_FOLD.fold(states, [*records, other]) == []
    assert [row.total_amount for row in ORDER_FOLD.rows(states)] == [Decimal("2.50")]


@pytest.mark.parametrize("backend", ["memory", "lmdb"])
@pytest.mark.parametrize("shadow", [False, True], ids=["live", "shadow"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 90))
def test_rows_loaded_twice_answer_as_the_events_applied_one_by_one(
    backend: Backend, shadow: bool, seed: int, cut: int
) -> None:
    # The second load finds every order's earlier row in place: the models write the
    # difference (stats move by it, an order already indexed under its customer stays once).
    log = random_log(seed=seed, commands=90, customers=3, products=5)
    records = log.records
    cut = min(cut, len(records))
    with tempfile.TemporaryDirectory() as directory, open_rig(backend, Path(directory)) as rig:
        targets = {name: view.new_shadow() if shadow else view for name, view in rig.views.items()}
        states: dict[str, Any] = {}
        for part, up_to in ((records[:cut], cut), (records[cut:], len(records))):
            assert ORDER_FOLD.fold(states, part) == []
            rows = list(ORDER_FOLD.rows(states))
            for view in targets.values():
                view.load_rows(rows, up_to)  # type: ignore[attr-defined]
        for name, view in targets.items():
            assert view.position() == len(records)
            if shadow:
                rig.views[name].adopt(view)
        check_answers(list(rig.views.values()), log)
