"""The peer reference: the order workload on the `eventsourcing` library (PyPI, 9.5.x).

Our benchmarks report their figures as ratios to these, measured in the same run. The workload
is :func:`_workload.order_workload` (1 create, 18 add-items, 1 ship or cancel per order; one
event per command), run the way the library is used: one thread, one ``Application.save`` per
command, the aggregate cache on.

Settings (verified against eventsourcing 9.5.6's source):

- Aggregate cache: ``AGGREGATE_CACHE_MAXSIZE`` = number of orders (all fit, an LRU cache), with
  the library's defaults ``AGGREGATE_CACHE_FASTFORWARD=y`` (each ``get`` re-reads newer events of
  the cached aggregate from the store) and ``DEEPCOPY_FROM_AGGREGATE_CACHE=y`` (each ``get``
  deep-copies the cached aggregate).
- Stores: ``eventsourcing.popo`` (in memory) and ``eventsourcing.sqlite`` with ``SQLITE_DBNAME``
  a file in a temporary directory. The library switches a file database to WAL and leaves
  ``synchronous`` at SQLite's default, FULL: every save is one auto-committed, fsynced
  transaction. Both pragmas are read back from the store and printed.
- Transcoder: the library's default JSON transcoder (Decimal as string), no compression or
  encryption, no snapshots.

Measured:

- ``commands_per_s``: the whole workload, interleaved across orders: ``repository.get`` (cache
  hit, fast-forward, deep copy), the command method (rules), ``save``.
- ``replay_events_per_s``: rebuild every order from its stored events through an uncached
  ``Repository`` on the same event store (read, decode, construct events, apply). The library
  asserts ``isinstance(event, CanMutateProtocol)`` (a runtime-checkable Protocol, slow on 3.11)
  per replayed event: under ``python -O`` replay runs ~2-3x faster. Run without ``-O`` (as
  the library is normally run); the header and the JSON say which.
- ``projection_events_per_s``: catch up an in-memory view from the start of the application
  sequence with the library's own projection mechanism: notifications read in batches of
  ``PROJECTION_BATCH`` with ``recorder.select_notifications``, decoded with the application's
  mapper, passed with a ``Tracking`` to a ``Projection`` whose view (a ``POPOTrackingRecorder``
  subclass) keeps a dict of orders with status and exact totals and records each position.
  This is the loop a ``ProjectionRunner`` runs, without its subscription thread: the library's
  SQLite store has no subscription (its runner needs POPO or PostgreSQL).

Run: ``python bench/peer_eventsourcing.py [--orders N] [--quick] [--json FILE]``.
"""

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from _workload import ADDS_PER_ORDER, order_workload
from eventsourcing.application import Application, Repository
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteApplicationRecorder

from domain.orders import (
    AddOrderItem,
    CancelOrder,
    CreateOrder,
    OrderCommand,
    ShipOrder,
)

__all__ = [
    "Order",
    "OrderRow",
    "OrdersApp",
    "OrdersProjection",
    "OrdersView",
    "main",
    "run_peer",
    "sqlite_settings",
]

Store = Literal["popo", "sqlite"]
STORES: tuple[Store, ...] = ("popo", "sqlite")
PROJECTION_BATCH = 1000
"""Notifications read per ``select_notifications`` call during projection catch-up."""


class RuleViolatedError(Exception):
    """A command broke an order rule (the peer's equivalent of our ``CommandRejected``)."""


# ---------------------------------------------------------------- the aggregate

ItemData = dict[str, Any]
"""One line as stored in an event: ``{"product_id": str, "quantity": int, "price": Decimal}``."""


class Order(Aggregate):
    """An order, written the way the library documents it.

    Public command methods check the rules; private ``@event`` methods are the event handlers
    (they run when the event is triggered and again on every replay, so they hold no rules).
    """

    class Created(Aggregate.Created):
        order_id: str
        customer_id: str
        items: list[ItemData]
        shipping_address: dict[str, str]

    class ItemAdded(Aggregate.Event):
        product_id: str
        quantity: int
        price: Decimal

    class Shipped(Aggregate.Event):
        pass

    class Cancelled(Aggregate.Event):
        reason: str

    @staticmethod
    def create_id(order_id: str) -> UUID:
        """Use the workload's order id (a UUID string) as the aggregate id."""
        return UUID(order_id)

    @event(Created)
    def __init__(
        self,
        order_id: str,
        customer_id: str,
        items: list[ItemData],
        shipping_address: dict[str, str],
    ) -> None:
        self.order_id = order_id
        self.customer_id = customer_id
        self.shipping_address = shipping_address
        self.status = "pending"
        self.cancel_reason = ""
        # Two flat dicts rather than one of (quantity, price) tuples: the library deep-copies
        # the aggregate on every get, and flat dicts of atomic values copy ~2x faster.
        self.quantities: dict[str, int] = {}
        self.prices: dict[str, Decimal] = {}
        for item in items:
            self.quantities[item["product_id"]] = item["quantity"]
            self.prices[item["product_id"]] = item["price"]

    @classmethod
    def create(
        cls,
        order_id: str,
        customer_id: str,
        items: Sequence[ItemData],
        shipping_address: dict[str, str],
    ) -> "Order":
        """Check the rules of a new order, then create it (duplicate products merged).

        Raises:
            RuleViolatedError: A rule is broken.
        """
        if not customer_id.strip():
            raise RuleViolatedError("customer_id must not be empty")
        if not items:
            raise RuleViolatedError("an order needs at least one item")
        if not all(value.strip() for value in shipping_address.values()):
            raise RuleViolatedError("every address field must be non-empty")
        merged: dict[str, ItemData] = {}
        for item in items:
            _check_line(item["quantity"], item["price"])
            old = merged.get(item["product_id"])
            if old is None:
                merged[item["product_id"]] = dict(item)
            elif old["price"] != item["price"]:
                raise RuleViolatedError(f"{item['product_id']!r} listed at two prices")
            else:
                old["quantity"] += item["quantity"]
        return cls(
            order_id=order_id,
            customer_id=customer_id,
            items=list(merged.values()),
            shipping_address=shipping_address,
        )

    def add_item(self, product_id: str, quantity: int, price: Decimal) -> None:
        """Add units of a product (same product: same price).

        Raises:
            RuleViolatedError: A rule is broken.
        """
        self._require_pending("add items to")
        _check_line(quantity, price)
        known = self.prices.get(product_id)
        if known is not None and known != price:
            raise RuleViolatedError(f"{product_id!r} is already in the order at {known}")
        self._item_added(product_id=product_id, quantity=quantity, price=price)

    def ship(self) -> None:
        """Ship a pending order.

        Raises:
            RuleViolatedError: The order is not pending.
        """
        self._require_pending("ship")
        self._shipped()

    def cancel(self, reason: str) -> None:
        """Cancel a pending order, with a reason.

        Raises:
            RuleViolatedError: The order is not pending, or the reason is empty.
        """
        self._require_pending("cancel")
        if not reason.strip():
            raise RuleViolatedError("a cancellation needs a reason")
        self._cancelled(reason=reason)

    def total(self) -> Decimal:
        """Return the exact total of the order's lines."""
        prices = self.prices
        return sum((prices[p] * q for p, q in self.quantities.items()), Decimal(0))

    def _require_pending(self, action: str) -> None:
        if self.status != "pending":
            raise RuleViolatedError(f"cannot {action} an order that is {self.status}")

    @event(ItemAdded)
    def _item_added(self, product_id: str, quantity: int, price: Decimal) -> None:
        self.quantities[product_id] = self.quantities.get(product_id, 0) + quantity
        self.prices[product_id] = price

    @event(Shipped)
    def _shipped(self) -> None:
        self.status = "shipped"

    @event(Cancelled)
    def _cancelled(self, reason: str) -> None:
        self.status = "cancelled"
        self.cancel_reason = reason


def _check_line(quantity: int, price: Decimal) -> None:
    if quantity < 1:
        raise RuleViolatedError(f"quantity is {quantity}; it must be >= 1")
    if price < 0:
        raise RuleViolatedError(f"price is {price}; it must be >= 0")


# ---------------------------------------------------------------- the application


class OrdersApp(Application[UUID]):
    """The order application: one ``save`` per command."""

    def handle(self, command: OrderCommand) -> None:
        """Execute one domain command (from ``domain.orders``) and save its event.

        Raises:
            RuleViolatedError: The command broke a rule.
            TypeError: ``command`` is not a command this peer supports.
        """
        if isinstance(command, AddOrderItem):
            order = self._get(command.order_id)
            order.add_item(command.product_id, command.quantity, command.price)
        elif isinstance(command, CreateOrder):
            order = Order.create(
                order_id=command.order_id,
                customer_id=command.customer_id,
                items=[
                    {"product_id": i.product_id, "quantity": i.quantity, "price": i.price}
                    for i in command.items
                ],
                shipping_address={
                    "street": command.shipping_address.street,
                    "city": command.shipping_address.city,
                    "postal_code": command.shipping_address.postal_code,
                    "country": command.shipping_address.country,
                },
            )
        elif isinstance(command, ShipOrder):
            order = self._get(command.order_id)
            order.ship()
        elif isinstance(command, CancelOrder):
            order = self._get(command.order_id)
            order.cancel(command.reason)
        else:
            raise TypeError(f"the peer does not run {type(command).__name__} commands")
        self.save(order)

    def _get(self, order_id: str) -> Order:
        order: Order = self.repository.get(UUID(order_id))
        return order


# ---------------------------------------------------------------- the projection


@dataclass(slots=True)
class OrderRow:
    """One order in the in-memory view."""

    customer_id: str
    status: str
    total: Decimal
    lines: int
    quantities: dict[str, int] = field(default_factory=dict)


class OrdersView(POPOTrackingRecorder):
    """A dict of orders, with the library's tracking of the last processed position."""

    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[UUID, OrderRow] = {}

    def order_created(
        self, order_id: UUID, customer_id: str, items: list[ItemData], tracking: Tracking
    ) -> None:
        """Add a pending order and record ``tracking``."""
        row = OrderRow(customer_id=customer_id, status="pending", total=Decimal(0), lines=0)
        for item in items:
            self._add(row, item["product_id"], item["quantity"], item["price"])
        self.orders[order_id] = row
        self.insert_tracking(tracking)

    def item_added(
        self, order_id: UUID, product_id: str, quantity: int, price: Decimal, tracking: Tracking
    ) -> None:
        """Add units to an order's totals and record ``tracking``."""
        self._add(self.orders[order_id], product_id, quantity, price)
        self.insert_tracking(tracking)

    def status_changed(self, order_id: UUID, status: str, tracking: Tracking) -> None:
        """Set an order's status and record ``tracking``."""
        self.orders[order_id].status = status
        self.insert_tracking(tracking)

    @staticmethod
    def _add(row: OrderRow, product_id: str, quantity: int, price: Decimal) -> None:
        old = row.quantities.get(product_id)
        if old is None:
            row.lines += 1
            row.quantities[product_id] = quantity
        else:
            row.quantities[product_id] = old + quantity
        row.total += price * quantity


class OrdersProjection(Projection[OrdersView]):
    """Projects order events into an :class:`OrdersView`."""

    @singledispatchmethod
    def process_event(self, domain_event: object, tracking: Tracking) -> None:
        """Ignore events of other types, but track them."""
        del domain_event
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, domain_event: Order.Created, tracking: Tracking) -> None:
        self.view.order_created(
            domain_event.originator_id, domain_event.customer_id, domain_event.items, tracking
        )

    @process_event.register
    def _(self, domain_event: Order.ItemAdded, tracking: Tracking) -> None:
        self.view.item_added(
            domain_event.originator_id,
            domain_event.product_id,
            domain_event.quantity,
            domain_event.price,
            tracking,
        )

    @process_event.register
    def _(self, domain_event: Order.Shipped, tracking: Tracking) -> None:
        self.view.status_changed(domain_event.originator_id, "shipped", tracking)

    @process_event.register
    def _(self, domain_event: Order.Cancelled, tracking: Tracking) -> None:
        self.view.status_changed(domain_event.originator_id, "cancelled", tracking)


def catch_up(app: OrdersApp, projection: OrdersProjection, batch: int = PROJECTION_BATCH) -> int:
    """Project every event after the view's tracked position; return how many were processed."""
    position: int = projection.view.max_tracking_id(app.name) or 0
    processed = 0
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=batch, inclusive_of_start=False
        )
        if not notifications:
            return processed
        for notification in notifications:
            projection.process_event(
                app.mapper.to_domain_event(notification), Tracking(app.name, notification.id)
            )
        processed += len(notifications)
        position = notifications[-1].id


# ---------------------------------------------------------------- measuring


def app_env(store: Store, orders: int, directory: Path) -> dict[str, str]:
    """Return the application environment for ``store`` with the aggregate cache on."""
    env = {
        "AGGREGATE_CACHE_MAXSIZE": str(max(orders, 1)),
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
        "IS_SNAPSHOTTING_ENABLED": "n",
    }
    if store == "popo":
        env["PERSISTENCE_MODULE"] = "eventsourcing.popo"
    else:
        env["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
        env["SQLITE_DBNAME"] = str(directory / "peer-orders.sqlite")
    return env


def sqlite_settings(app: OrdersApp) -> dict[str, str]:
    """Read back ``journal_mode`` and ``synchronous`` from the application's SQLite store."""
    names = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}
    recorder = app.recorder
    if not isinstance(recorder, SQLiteApplicationRecorder):
        raise TypeError(f"not an SQLite store: {type(recorder).__name__}")
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal_mode = str(cursor.fetchone()[0])
        cursor.execute("PRAGMA synchronous")
        raw = str(cursor.fetchone()[0])
    return {"journal_mode": journal_mode, "synchronous": names.get(raw, raw)}


def _timed(work: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    count = work()
    return count, time.perf_counter() - start


def run_peer(
    orders: int,
    store: Store,
    adds_per_order: int = ADDS_PER_ORDER,
    *,
    settings: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run the order workload on the library; return its throughputs.

    Args:
        orders: Number of orders (aggregates); ``orders * (adds_per_order + 2)`` commands.
        store: ``"popo"`` (in memory) or ``"sqlite"`` (a file in a temporary directory).
        adds_per_order: ``AddOrderItem`` commands per order.
        settings: If given, receives the store's settings as read back (SQLite pragmas).

    Returns:
        ``commands_per_s``, ``replay_events_per_s``, ``projection_events_per_s`` and ``events``
        (the number of stored events, one per command).

    Raises:
        RuntimeError: The library's results disagree with the workload (a broken run).
    """
    commands = order_workload(orders, adds_per_order)
    with tempfile.TemporaryDirectory(prefix="peer-es-") as tmp:
        app = OrdersApp(env=app_env(store, orders, Path(tmp)))
        try:
            if settings is not None:
                settings.clear()
                settings.update(sqlite_settings(app) if store == "sqlite" else {"store": "memory"})
            return _measure(app, commands, orders)
        finally:
            app.close()


def _measure(app: OrdersApp, commands: Sequence[OrderCommand], orders: int) -> dict[str, float]:
    handle = app.handle

    def run_commands() -> int:
        for command in commands:
            handle(command)
        return len(commands)

    order_ids = list(dict.fromkeys(UUID(c.order_id) for c in commands))
    uncached = Repository(event_store=app.events)
    rebuilt: list[Order] = []

    def replay() -> int:
        rebuilt.extend(uncached.get(order_id) for order_id in order_ids)
        return sum(order.version for order in rebuilt)

    projection = OrdersProjection(view=OrdersView())

    def project() -> int:
        return catch_up(app, projection)

    gc.collect()
    done, command_s = _timed(run_commands)
    gc.collect()
    events, replay_s = _timed(replay)
    gc.collect()
    projected, projection_s = _timed(project)

    if not (events == projected == done == len(commands)) or len(projection.view.orders) != orders:
        raise RuntimeError(
            f"inconsistent run: {done} commands, {events} replayed, {projected} projected, "
            f"{len(projection.view.orders)} orders in the view (expected {orders})"
        )
    for order in rebuilt[:: max(1, len(rebuilt) // 50)]:
        row = projection.view.orders[order.id]
        if (row.status, row.total) != (order.status, order.total()):
            raise RuntimeError(f"view and aggregate disagree on order {order.id}")
    return {
        "commands_per_s": done / command_s,
        "replay_events_per_s": events / replay_s,
        "projection_events_per_s": projected / projection_s,
        "events": float(events),
    }


# ---------------------------------------------------------------- command line

METRICS = ("commands_per_s", "replay_events_per_s", "projection_events_per_s")


def _median_runs(
    orders: int, store: Store, adds_per_order: int, runs: int
) -> tuple[dict[str, float], list[dict[str, float]], dict[str, str]]:
    settings: dict[str, str] = {}
    samples = [run_peer(orders, store, adds_per_order, settings=settings) for _ in range(runs)]
    median = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    return median, samples, settings


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the peer on both stores, print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=None, help="orders (default 1000; 300 quick)")
    parser.add_argument("--adds", type=int, default=ADDS_PER_ORDER, help="add-items per order")
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="one small run per store (< 15 s)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")
    args = parser.parse_args(argv)
    orders: int = args.orders if args.orders is not None else (300 if args.quick else 1000)
    runs: int = args.runs if args.runs is not None else (1 if args.quick else 3)
    adds: int = args.adds

    print(
        f"eventsourcing {version('eventsourcing')} peer, {orders} orders x {adds + 2} commands, "
        f"aggregate cache on, {'median of ' + str(runs) if runs > 1 else '1'} run(s), "
        f"asserts {'off (-O)' if sys.flags.optimize else 'on'}"
    )
    header = f"{'store':<8}{'commands/s':>12}{'replay ev/s':>14}{'projection ev/s':>17}  settings"
    print(header)
    print("-" * len(header))
    report: dict[str, Any] = {
        "peer": "eventsourcing",
        "version": version("eventsourcing"),
        "python": platform.python_version(),
        "python_optimize": sys.flags.optimize,
        "orders": orders,
        "adds_per_order": adds,
        "runs": runs,
        "stores": {},
    }
    for store in STORES:
        median, samples, settings = _median_runs(orders, store, adds, runs)
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        print(
            f"{store:<8}{median['commands_per_s']:>12,.0f}{median['replay_events_per_s']:>14,.0f}"
            f"{median['projection_events_per_s']:>17,.0f}  {shown}"
        )
        report["stores"][store] = {"median": median, "runs": samples, "settings": settings}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
