"""The demo: a realistic order workload on the embedded engine, then what the views answer.

Customers place orders for a small coffee-gear catalogue, add and remove lines, and orders get
shipped or cancelled. Commands are submitted through a bounded window of futures (the way a busy
caller would use ``Engine.submit``), so large runs finish quickly. A few commands break the rules
on purpose, to show how each error is reported. Every order id is a fresh uuid, so the demo can
run again on the same data directory.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import pykka
from rich.console import Console
from rich.table import Table

from actors import CommandResult, Engine, EngineError
from cli._render import (
    order_table,
    page_table,
    pairs_table,
    progress_bar,
    stats_table,
    status_tables,
)
from domain.ids import new_id
from domain.orders import (
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)
from views.orders import GetCustomerOrders, GetOrderById, GetOrderStats, SearchOrders

__all__ = ["PROGRESS_FROM", "run_demo"]

CATALOGUE: Final = {
    "espresso-beans-1kg": Decimal("18.90"),
    "pour-over-kettle": Decimal("54.00"),
    "ceramic-mug": Decimal("12.50"),
    "burr-grinder": Decimal("129.00"),
    "paper-filters-100": Decimal("4.95"),
    "milk-frother": Decimal("39.99"),
    "tamper-58mm": Decimal("24.00"),
    "cold-brew-jar": Decimal("29.50"),
}
CUSTOMERS: Final = tuple(f"customer-{number:02d}" for number in range(1, 26))
ADDRESSES: Final = (
    Address(street="12 Kastanienallee", city="Berlin", postal_code="10435", country="DE"),
    Address(street="4 Rue Mercière", city="Lyon", postal_code="69002", country="FR"),
    Address(street="221 Baker Street", city="London", postal_code="NW1 6XE", country="GB"),
    Address(street="8 Via Toledo", city="Napoli", postal_code="80134", country="IT"),
)
PROGRESS_FROM: Final = 1000
"""Runs with at least this many orders show a progress bar (on stderr)."""

_WINDOW: Final = 2000  # commands in flight at once
_TIMEOUT: Final = 30.0


@dataclass
class _Order:
    """The caller's own picture of an order it created (ids and lines, for follow-ups)."""

    order_id: str
    customer_id: str
    lines: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class _Window:
    """Keeps up to ``size`` commands in flight and tallies their outcomes."""

    engine: Engine
    advance: Callable[[], None]
    size: int = _WINDOW
    accepted: int = 0
    rejected: int = 0
    last_position: int = 0
    _pending: deque[pykka.Future[CommandResult]] = field(default_factory=deque)

    def submit(self, command: Any) -> None:
        self._pending.append(self.engine.submit(command, timeout=_TIMEOUT))
        while len(self._pending) > self.size:
            self._settle(self._pending.popleft())

    def drain(self) -> None:
        while self._pending:
            self._settle(self._pending.popleft())

    def _settle(self, future: pykka.Future[CommandResult]) -> None:
        try:
            result = future.get(timeout=_TIMEOUT)
        except EngineError:
            self.rejected += 1
        else:
            self.accepted += 1
            self.last_position = max(self.last_position, result.position)
        self.advance()


def _lines(rng: random.Random) -> dict[str, Decimal]:
    products = rng.sample(sorted(CATALOGUE), rng.randint(1, 3))
    return {product: CATALOGUE[product] for product in products}


def _create(rng: random.Random, order: _Order) -> CreateOrder:
    return CreateOrder(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=[
            OrderItem(product_id=product, quantity=rng.randint(1, 3), price=price)
            for product, price in order.lines.items()
        ],
        shipping_address=rng.choice(ADDRESSES),
    )


def _changes(rng: random.Random, order: _Order) -> list[Any]:
    """Return a pending order's follow-up commands: add and remove lines, ship or cancel."""
    commands: list[Any] = []
    if rng.random() < 0.35:  # noqa: PLR2004 - workload mix
        product = rng.choice(sorted(CATALOGUE))
        price = order.lines.setdefault(product, CATALOGUE[product])
        commands.append(
            AddOrderItem(order_id=order.order_id, product_id=product, quantity=1, price=price)
        )
    if len(order.lines) > 1 and rng.random() < 0.2:  # noqa: PLR2004 - workload mix
        product = rng.choice(sorted(order.lines))
        del order.lines[product]
        commands.append(RemoveOrderItem(order_id=order.order_id, product_id=product))
    fate = rng.random()
    if fate < 0.5:  # noqa: PLR2004 - workload mix
        commands.append(ShipOrder(order_id=order.order_id))
    elif fate < 0.65:  # noqa: PLR2004 - workload mix
        commands.append(CancelOrder(order_id=order.order_id, reason="customer changed their mind"))
    return commands


def _showcase(engine: Engine) -> list[tuple[str, str, str]]:
    """Send commands that break the rules on purpose; return (attempt, outcome, message)."""
    address = ADDRESSES[0]
    mug = OrderItem(product_id="ceramic-mug", quantity=1, price=CATALOGUE["ceramic-mug"])
    cancelled = engine.execute(
        CreateOrder(customer_id="customer-01", items=[mug], shipping_address=address)
    ).aggregate_id
    engine.execute(CancelOrder(order_id=cancelled, reason="duplicate order"))
    pending = CreateOrder(customer_id="customer-02", items=[mug], shipping_address=address)
    first = engine.execute(pending)
    engine.execute(
        AddOrderItem(
            order_id=pending.order_id, product_id="ceramic-mug", quantity=1, price=mug.price
        )
    )
    attempts: list[tuple[str, Any]] = [
        (
            "create an order without items",
            CreateOrder(customer_id="customer-03", items=[], shipping_address=address),
        ),
        ("ship a cancelled order", ShipOrder(order_id=cancelled)),
        ("ship an order that does not exist", ShipOrder(order_id="no-such-order")),
        (
            "add a line with quantity 0",
            AddOrderItem(
                order_id=pending.order_id,
                product_id="tamper-58mm",
                quantity=0,
                price=CATALOGUE["tamper-58mm"],
            ),
        ),
        (
            "ship with a stale expected_version (1; it is at 2)",
            ShipOrder(order_id=pending.order_id, expected_version=1),
        ),
        (
            "reuse a command_id for another command",
            ShipOrder(order_id=pending.order_id, command_id=pending.command_id),
        ),
        ("retry the same create (same command_id)", pending),
    ]
    outcomes = []
    for attempt, command in attempts:
        try:
            result = engine.execute(command, timeout=_TIMEOUT)
        except EngineError as error:
            outcomes.append((attempt, type(error).__name__, str(error)))
        else:
            same = result.position == first.position
            note = "the original result, nothing appended" if same else "accepted"
            outcomes.append((attempt, "ok", f"{note} (position {result.position})"))
    return outcomes


def _errors_table(outcomes: list[tuple[str, str, str]]) -> Table:
    table = Table(title="Rules enforced (handled errors)", title_justify="left")
    table.add_column("attempt", no_wrap=True)
    table.add_column("outcome", style="bold", no_wrap=True)
    table.add_column("message", overflow="fold")
    for row in outcomes:
        table.add_row(*row)
    return table


def run_demo(engine: Engine, orders: int, console: Console) -> None:
    """Run the workload with ``orders`` new orders on ``engine`` and print what the views say.

    Raises:
        EngineError: The engine failed in a way the demo does not expect (the CLI reports it).
    """
    rng = random.Random()  # noqa: S311 - workload data, not security
    # Fresh (time-ordered) uuids: the demo may run again on the same data directory.
    created = [_Order(new_id(), rng.choice(CUSTOMERS)) for _ in range(orders)]
    for order in created:
        order.lines = _lines(rng)
    started = time.perf_counter()
    with progress_bar(disable=orders < PROGRESS_FROM) as progress:
        task = progress.add_task("creating orders", total=orders)
        window = _Window(engine, lambda: progress.advance(task))
        for order in created:
            window.submit(_create(rng, order))
        window.drain()
        changes = [command for order in created for command in _changes(rng, order)]
        progress.reset(task, total=len(changes), description="updating orders")
        for command in changes:
            window.submit(command)
        window.drain()
    seconds = time.perf_counter() - started
    outcomes = _showcase(engine)
    head = engine.store.head()
    commands = window.accepted + window.rejected
    console.print(
        pairs_table(
            "Workload",
            [
                ("orders created", orders),
                ("commands accepted", window.accepted),
                ("commands rejected", window.rejected),
                ("seconds", f"{seconds:.2f}"),
                ("commands/s", f"{commands / seconds:,.0f}" if seconds > 0 else "-"),
                ("log head", head),
            ],
        )
    )
    console.print(_errors_table(outcomes))
    _print_answers(engine, created, head, console)


def _print_answers(engine: Engine, created: list[_Order], head: int, console: Console) -> None:
    # Read your writes: every query waits until its view has applied the whole workload.
    shipped = next(
        (
            view
            for order in created[:200]
            if (view := engine.query(GetOrderById(order.order_id), after=head)) is not None
            and view.status == "shipped"
        ),
        None,
    )
    if shipped is not None:
        console.print(order_table(f"GetOrderById({shipped.order_id!r})", shipped))
    customer = created[0].customer_id if created else CUSTOMERS[0]
    page = engine.query(GetCustomerOrders(customer, page_size=5), after=head)
    console.print(page_table(f"GetCustomerOrders({customer!r}, page_size=5)", page))
    search = SearchOrders(query="grinder", sort_by="total_amount", page_size=5)
    console.print(
        page_table(
            "SearchOrders(query='grinder', sort_by='total_amount', sort_order='desc')",
            engine.query(search, after=head),
        )
    )
    console.print(stats_table("GetOrderStats()", engine.query(GetOrderStats(), after=head)))
    engine.wait_for_views(head, timeout=_TIMEOUT)
    for table in status_tables(engine.status()):
        console.print(table)
