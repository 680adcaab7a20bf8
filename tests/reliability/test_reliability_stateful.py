"""A stateful property: random order commands, duplicates and restarts against a small model.

After every step the aggregates (as the views answer with ``after=head``), the views' stats and
the stream versions agree with the model; at the end the log replayed through ``ORDERS.evolve``
agrees too.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from reliability_kit import ADDRESS, check_log

from actors import AggregateNotFound, CommandRejected, Engine
from domain.orders import (
    AddOrderItem,
    CancelOrder,
    CreateOrder,
    OrderCommand,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)
from views.orders import GetOrderById, GetOrderStats, OrderStats

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ORDER_IDS = [f"o{i}" for i in range(5)]
PRODUCTS = [f"p{i}" for i in range(4)]
PRICES = {p: Decimal(f"{i + 1}.50") for i, p in enumerate(PRODUCTS)}

orders = st.sampled_from(ORDER_IDS)
products = st.sampled_from(PRODUCTS)
quantities = st.integers(1, 5)


@dataclass
class Order:
    customer: str
    status: str = "pending"
    lines: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    version: int = 1

    def total(self) -> Decimal:
        return sum((q * p for q, p in self.lines.values()), Decimal(0))


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "data"
        self.engine = self.open()
        self.model: dict[str, Order] = {}
        self.last: tuple[OrderCommand, Any] | None = None

    def open(self) -> Engine:
        return Engine.open(self.path, durability="async", clock=lambda: NOW)

    def run(self, command: OrderCommand, expected: type[Exception] | None) -> bool:
        head = self.engine.store.head()
        if expected is not None:
            with pytest.raises(expected) as caught:
                self.engine.execute(command)
            assert type(caught.value) is expected, caught.value  # not InvalidCommand
            assert self.engine.store.head() == head
            return False
        result = self.engine.execute(command)
        assert result.position == head + 1
        self.last = (command, result)
        return True

    def pending(self, order_id: str) -> type[Exception] | None:
        order = self.model.get(order_id)
        if order is None:
            return AggregateNotFound
        return None if order.status == "pending" else CommandRejected

    # ------------------------------------------------------------ rules

    @rule(order_id=orders, customer=st.sampled_from(["c1", "c2"]), product=products, q=quantities)
    def create(self, order_id: str, customer: str, product: str, q: int) -> None:
        items = [OrderItem(product_id=product, quantity=q, price=PRICES[product])]
        command = CreateOrder(
            order_id=order_id, customer_id=customer, items=items, shipping_address=ADDRESS
        )
        expected = CommandRejected if order_id in self.model else None
        if self.run(command, expected):
            self.model[order_id] = Order(customer, lines={product: (q, PRICES[product])})

    @rule(order_id=orders, product=products, q=quantities, wrong_price=st.booleans())
    def add(self, order_id: str, product: str, q: int, wrong_price: bool) -> None:
        price = PRICES[product] + (1 if wrong_price else 0)
        command = AddOrderItem(order_id=order_id, product_id=product, quantity=q, price=price)
        expected = self.pending(order_id)
        order = self.model.get(order_id)
        if expected is None and order is not None and product in order.lines:
            expected = None if order.lines[product][1] == price else CommandRejected
        if self.run(command, expected):
            assert order is not None
            old = order.lines.get(product, (0, price))[0]
            order.lines[product] = (old + q, price)
            order.version += 1

    @rule(order_id=orders, product=products)
    def remove(self, order_id: str, product: str) -> None:
        command = RemoveOrderItem(order_id=order_id, product_id=product)
        expected = self.pending(order_id)
        order = self.model.get(order_id)
        if (
            expected is None
            and order is not None
            and (product not in order.lines or len(order.lines) == 1)
        ):
            expected = CommandRejected
        if self.run(command, expected):
            assert order is not None
            del order.lines[product]
            order.version += 1

    @rule(order_id=orders, ship=st.booleans())
    def finish(self, order_id: str, ship: bool) -> None:
        command: OrderCommand = (
            ShipOrder(order_id=order_id) if ship else CancelOrder(order_id=order_id, reason="no")
        )
        if self.run(command, self.pending(order_id)):
            order = self.model[order_id]
            order.status = "shipped" if ship else "cancelled"
            order.version += 1

    @rule()
    def resend_last(self) -> None:
        if self.last is None:
            return
        command, result = self.last
        head = self.engine.store.head()
        assert self.engine.execute(command) == result
        assert self.engine.store.head() == head

    @rule()
    def restart(self) -> None:
        self.engine.close()
        self.engine = self.open()

    # ------------------------------------------------------------ checks

    @invariant()
    def aggregates_and_views_agree_with_the_model(self) -> None:
        head = self.engine.store.head()
        for order_id in ORDER_IDS:
            view = self.engine.query(GetOrderById(order_id), after=head)
            order = self.model.get(order_id)
            if order is None:
                assert view is None
                assert self.engine.store.stream_version(order_id, stream_type="order") == 0
                continue
            assert view is not None
            assert (view.status, view.customer_id) == (order.status, order.customer)
            assert view.total_amount == order.total()
            assert view.item_count == sum(q for q, _ in order.lines.values())
            assert self.engine.store.stream_version(order_id, stream_type="order") == order.version
        assert self.engine.query(GetOrderStats(), after=head) == self.stats()

    def stats(self) -> OrderStats:
        units: dict[str, int] = {}
        for order in self.model.values():
            if order.status != "cancelled":
                for product, (q, _) in order.lines.items():
                    units[product] = units.get(product, 0) + q
        return OrderStats(
            total_orders=len(self.model),
            by_status={
                s: sum(o.status == s for o in self.model.values())
                for s in ("pending", "shipped", "cancelled")
            },
            revenue=sum(
                (o.total() for o in self.model.values() if o.status == "shipped"), Decimal(0)
            ),
            top_products=sorted(units.items(), key=lambda pu: (-pu[1], pu[0]))[:10],
        )

    def teardown(self) -> None:
        try:
            replayed = check_log(self.engine.store)
            assert set(replayed.states) == set(self.model)
            for order_id, order in self.model.items():
                state = replayed.states[order_id]
                assert state.status == order.status
                lines = {i.product_id: (i.quantity, i.price) for i in state.items}
                assert lines == order.lines
        finally:
            self.engine.close()
            self.tmp.cleanup()


OrderMachine.TestCase.settings = settings(
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_commands_with_restarts_agree_with_a_model = OrderMachine.TestCase
