"""Helpers for the read-side tests through the engine.

:class:`OrderModel` is an independent model of the orders, built from the commands a test sent
(and the times the engine stamped on their events): plain dicts, lists and ``sorted``, no code
shared with views/ nor with the decider. It predicts whether a command is accepted and answers
every order query as the contract says.

The view wrappers are fault-injection seams around real views (passed with
``Engine.open(views=[...])``): :class:`GatedView` blocks its apply on an event the test controls,
:class:`CountingView` counts the
queries that reached it, :class:`FlakyView` fails its writes (rows or checkpoint) the way a
failing views environment does. :class:`PoisonModel` wraps a real read model and raises for one
order id while switched on.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import lmdb
from hypothesis import strategies as st

from actors import CommandResult, Engine
from domain.errors import AggregateNotFound, CommandRejected
from domain.orders import (
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)
from store import RecordedEvent
from views import MemoryView, ReadModel, Storage, View
from views.orders import (
    CustomerOrdersModel,
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderDetailsModel,
    OrderSearchModel,
    OrderStats,
    OrderStatsModel,
    OrderView,
    Page,
    SearchOrders,
    order_views,
)

ADDRESS = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")
EPOCH = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STATUSES = ("pending", "shipped", "cancelled")
SORTS = ("created_at", "total_amount", "item_count")
PRICES = (Decimal(0), Decimal("1.50"), Decimal("2.25"), Decimal(10), Decimal("0.10"))
WAIT = 10.0  # seconds: the deadline of every wait in these tests


class StepClock:
    """An engine clock whose times repeat and go backwards: ties and out-of-order creation."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> datetime:
        """Return the next time (thread-safe: itertools.count is atomic under the GIL)."""
        return EPOCH + timedelta(seconds=(next(self._ticks) * 7) % 11)


@dataclass
class ModelOrder:
    """One order as the model knows it."""

    order_id: str
    customer_id: str
    position: int  # of the creating event
    created_at: datetime
    lines: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    status: str = "pending"
    shipped_at: datetime | None = None

    def view(self) -> OrderView:
        """Return the order as the contract shows it."""
        return OrderView(
            order_id=self.order_id,
            customer_id=self.customer_id,
            status=self.status,
            total_amount=sum((q * p for q, p in self.lines.values()), Decimal(0)),
            item_count=sum(q for q, _ in self.lines.values()),
            created_at=self.created_at,
            shipped_at=self.shipped_at,
        )


def _page(items: list[OrderView], page: int, size: int) -> Page[OrderView]:
    start = (page - 1) * size
    total = len(items)
    pages = (total + size - 1) // size
    return Page(items=items[start : start + size], total=total, page=page, page_size=size,
                total_pages=pages)  # fmt: skip


class OrderModel:
    """The orders, from the accepted commands; answers every order query."""

    def __init__(self) -> None:
        self.orders: dict[str, ModelOrder] = {}
        self.head = 0
        self._lock = threading.Lock()  # commands may come back from several threads

    def accepts(self, command: Any) -> bool:
        """Predict whether the engine accepts ``command`` (the generated ones only)."""
        if isinstance(command, CreateOrder):
            return self._accepts_create(command)
        order = self.orders.get(command.order_id)
        if order is None or order.status != "pending":
            return False
        if isinstance(command, AddOrderItem):
            line = order.lines.get(command.product_id)
            return command.quantity >= 1 and (line is None or line[1] == command.price)
        if isinstance(command, RemoveOrderItem):
            return command.product_id in order.lines and len(order.lines) > 1
        if isinstance(command, CancelOrder):
            return bool(command.reason.strip())
        return isinstance(command, ShipOrder)

    def _accepts_create(self, command: CreateOrder) -> bool:
        prices: dict[str, Decimal] = {}
        for item in command.items:
            if prices.setdefault(item.product_id, item.price) != item.price:
                return False  # the same product twice at two prices
        return (
            command.order_id not in self.orders
            and bool(command.items)
            and bool(command.customer_id.strip())
            and all(i.quantity >= 1 and i.price >= 0 for i in command.items)
        )

    def record(self, command: Any, result: CommandResult) -> None:
        """Fold an accepted command into the model (times come from its committed event)."""
        (event,) = result.events
        with self._lock:
            self.head = max(self.head, result.position)
            if isinstance(command, CreateOrder):
                order = ModelOrder(
                    order_id=command.order_id,
                    customer_id=command.customer_id,
                    position=result.position,
                    created_at=event.created_at,  # type: ignore[attr-defined]
                )
                for item in command.items:
                    quantity = order.lines.get(item.product_id, (0, item.price))[0]
                    order.lines[item.product_id] = (quantity + item.quantity, item.price)
                self.orders[order.order_id] = order
                return
            order = self.orders[command.order_id]
            if isinstance(command, AddOrderItem):
                quantity = order.lines.get(command.product_id, (0, command.price))[0]
                order.lines[command.product_id] = (quantity + command.quantity, command.price)
            elif isinstance(command, RemoveOrderItem):
                del order.lines[command.product_id]
            elif isinstance(command, ShipOrder):
                order.status = "shipped"
                order.shipped_at = event.shipped_at  # type: ignore[attr-defined]
            else:
                order.status = "cancelled"

    # ------------------------------------------------------------ answers

    def answer(self, query: Any) -> Any:
        """Answer ``query`` as the contract says."""
        with self._lock:
            if isinstance(query, GetOrderById):
                order = self.orders.get(query.order_id)
                return None if order is None else order.view()
            if isinstance(query, GetCustomerOrders):
                return self._customer(query)
            if isinstance(query, SearchOrders):
                return self._search(query)
            assert isinstance(query, GetOrderStats)
            return self._stats()

    def _customer(self, query: GetCustomerOrders) -> Page[OrderView]:
        mine = [o for o in self.orders.values() if o.customer_id == query.customer_id]
        mine.sort(key=lambda o: o.position, reverse=True)
        views = [o.view() for o in mine]
        views = [v for v in views if query.status is None or v.status == query.status]
        return _page(views, query.page, query.page_size)

    def _search(self, query: SearchOrders) -> Page[OrderView]:
        needle = query.query.casefold()
        hits: list[tuple[ModelOrder, OrderView]] = []
        for order in self.orders.values():
            view = order.view()
            texts = [order.order_id, order.customer_id, *order.lines]
            if needle and not any(needle in text.casefold() for text in texts):
                continue
            if query.status is not None and view.status != query.status:
                continue
            if query.min_total is not None and view.total_amount < query.min_total:
                continue
            if query.max_total is not None and view.total_amount > query.max_total:
                continue
            hits.append((order, view))
        keys: dict[str, Callable[[tuple[ModelOrder, OrderView]], Any]] = {
            "created_at": lambda hit: (hit[1].created_at, hit[0].position),
            "total_amount": lambda hit: (hit[1].total_amount, hit[0].position),
            "item_count": lambda hit: (hit[1].item_count, hit[0].position),
        }
        hits.sort(key=keys[query.sort_by], reverse=query.sort_order == "desc")
        return _page([view for _, view in hits], query.page, query.page_size)

    def _stats(self) -> OrderStats:
        by_status = dict.fromkeys(STATUSES, 0)
        revenue = Decimal(0)
        units: dict[str, int] = {}
        for order in self.orders.values():
            view = order.view()
            by_status[view.status] += 1
            if view.status == "shipped":
                revenue += view.total_amount
            if view.status != "cancelled":
                for product_id, (quantity, _) in order.lines.items():
                    units[product_id] = units.get(product_id, 0) + quantity
        top = sorted(((p, u) for p, u in units.items() if u), key=lambda pu: (-pu[1], pu[0]))
        return OrderStats(
            total_orders=len(self.orders),
            by_status=by_status,
            revenue=revenue,
            top_products=top[:10],
        )

    # ------------------------------------------------------------ probes

    def probes(self) -> list[Any]:
        """A spread of queries over what the model holds, with every pagination edge."""
        queries: list[Any] = [GetOrderStats(), GetOrderById("no-such-order")]
        queries += [GetOrderById(order_id) for order_id in self.orders]
        queries += self._customer_probes()
        queries += self._search_probes()
        return queries

    def _customer_probes(self) -> list[Any]:
        queries: list[Any] = []
        customers = [*sorted({o.customer_id for o in self.orders.values()}), "nobody"]
        for customer in customers:
            mine = sum(o.customer_id == customer for o in self.orders.values())
            queries += [
                GetCustomerOrders(customer, status=status, page_size=1000)
                for status in (None, *STATUSES)
            ]
            queries += [
                GetCustomerOrders(customer, page=page, page_size=size)
                for size in (1, 2, 3)
                for page in range(1, (mine + size - 1) // size + 2)  # one past the last page too
            ]
        return queries

    def _search_probes(self) -> list[Any]:
        total = len(self.orders)
        queries: list[Any] = [
            SearchOrders(needle, sort_by=sort_by, sort_order=order)
            for needle in ("", "ord", "CUST-1", "sku-2", "-", "zzz")
            for sort_by in SORTS
            for order in ("asc", "desc")
        ]
        queries += [
            SearchOrders(sort_by="total_amount", page=page, page_size=size)
            for size in (1, 2, 7)
            for page in range(1, (total + size - 1) // size + 2)
        ]
        queries += [
            SearchOrders(status=status, sort_by="item_count", sort_order="asc")
            for status in STATUSES
        ]
        queries += [
            SearchOrders(min_total=Decimal("1.50"), max_total=Decimal(10)),
            SearchOrders(min_total=Decimal("2.25"), page_size=1000),
            SearchOrders(max_total=Decimal(0), page_size=1000),
            SearchOrders(min_total=Decimal(3), max_total=Decimal(3)),
        ]
        return queries


def create(
    order_id: str, customer: str = "Cust-1", *lines: tuple[str, int, Decimal]
) -> CreateOrder:
    """A CreateOrder; one line of ``sku-1`` when no line is given."""
    items = [OrderItem(product_id=p, quantity=q, price=price) for p, q, price in lines] or [
        OrderItem(product_id="sku-1", quantity=1, price=Decimal("1.50"))
    ]
    return CreateOrder(
        order_id=order_id, customer_id=customer, items=items, shipping_address=ADDRESS
    )


def command_from(step: Sequence[int], order_ids: Sequence[str]) -> Any:
    """Turn a generated step (kind, order, customer, product, quantity, price) into a command.

    Prices mostly follow the product (so adds merge) and sometimes not (price mismatches).
    """
    kind, order, customer, product, quantity, price = step
    product_id = f"sku-{product}"
    price_of = PRICES[product % len(PRICES)] if price % 3 else PRICES[price % len(PRICES)]
    if kind == 0 or not order_ids:
        lines = [OrderItem(product_id=product_id, quantity=quantity, price=price_of)]
        if price % 2:
            second = f"sku-{(product + 1) % 5}"
            lines.append(OrderItem(product_id=second, quantity=1, price=PRICES[price % 5]))
        return CreateOrder(
            order_id=f"ORD-{order}-{len(order_ids)}",
            customer_id=f"Cust-{customer}",
            items=lines,
            shipping_address=ADDRESS,
        )
    order_id = order_ids[order % len(order_ids)]
    if kind == 1:
        return AddOrderItem(
            order_id=order_id, product_id=product_id, quantity=quantity, price=price_of
        )
    if kind == 2:
        return RemoveOrderItem(order_id=order_id, product_id=product_id)
    if kind == 3:
        return ShipOrder(order_id=order_id)
    return CancelOrder(order_id=order_id, reason="changed my mind")


def run(engine: Engine, model: OrderModel, command: Any) -> CommandResult | None:
    """Execute ``command``; check the model predicted its fate; fold it in if accepted."""
    expected = model.accepts(command)
    try:
        result = engine.execute(command, timeout=WAIT)
    except (CommandRejected, AggregateNotFound):
        assert not expected, command
        return None
    assert expected, command
    model.record(command, result)
    return result


def run_steps(engine: Engine, model: OrderModel, steps: Iterable[Sequence[int]]) -> None:
    """Run generated steps through the engine and the model."""
    order_ids: list[str] = []
    for step in steps:
        command = command_from(step, order_ids)
        if run(engine, model, command) is not None and isinstance(command, CreateOrder):
            order_ids.append(command.order_id)


steps = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.integers(0, 30),
        st.integers(0, 3),
        st.integers(0, 4),
        st.integers(1, 3),
        st.integers(0, 11),
    ),
    min_size=1,
    max_size=40,
)
"""Generated steps (see :func:`command_from`): a short random history of orders."""


def random_steps(seed: int, count: int) -> list[tuple[int, int, int, int, int, int]]:
    """``count`` random steps (see :func:`command_from`)."""
    rng = random.Random(seed)
    return [
        (
            rng.choice((0, 0, 1, 1, 2, 3, 4)),
            rng.randrange(40),
            rng.randrange(4),
            rng.randrange(5),
            rng.randint(1, 4),
            rng.randrange(12),
        )
        for _ in range(count)
    ]


def assert_answers(engine: Engine, model: OrderModel, queries: Iterable[Any]) -> None:
    """Every query, asked after the model's head, equals the model's answer."""
    for query in queries:
        got = engine.query(query, after=model.head, timeout=WAIT)
        assert got == model.answer(query), query


def answers(engine: Engine, queries: Sequence[Any], after: int = 0) -> list[Any]:
    """The engine's answers to ``queries``."""
    return [engine.query(query, after=after, timeout=WAIT) for query in queries]


# ---------------------------------------------------------------- view wrappers


class WrappedView:
    """Delegates everything to a real view; subclasses inject faults."""

    def __init__(self, inner: View) -> None:
        self.inner = inner
        self.name = inner.name
        self.backend = inner.backend
        self.tags = inner.tags
        self.skip_unknown = inner.skip_unknown
        self.query_types = inner.query_types

    def position(self) -> int:
        """Delegate."""
        return self.inner.position()

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Delegate."""
        self.inner.apply(events, up_to)

    def reapply(self, event: RecordedEvent) -> None:
        """Delegate."""
        self.inner.reapply(event)

    def query(self, query: object) -> object:
        """Delegate."""
        return self.inner.query(query)

    def new_shadow(self) -> View:
        """Delegate."""
        return self.inner.new_shadow()

    def adopt(self, shadow: View) -> None:
        """Delegate."""
        self.inner.adopt(shadow)

    def clear(self) -> None:
        """Delegate."""
        self.inner.clear()

    def close(self) -> None:
        """Delegate."""
        self.inner.close()


class GatedView(WrappedView):
    """Its apply waits for ``gate`` (set = open); ``entered`` is set once an apply is waiting.

    It is ``isolated``: it gets a projector of its own, so its stuck apply holds no other view.
    """

    isolated = True

    def __init__(self, inner: View) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Wait for the gate (bounded, so a failing test cannot hang the engine), then apply."""
        if not self.gate.is_set():
            self.entered.set()
            self.gate.wait(60)
        super().apply(events, up_to)


class PoisonModel:
    """A real read model that raises for events of ``order_id`` while ``poisoned`` is set.

    The fault lives in the read model, so the view's rebuild shadows are poisoned too.
    """

    def __init__(self, inner: ReadModel, order_id: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.tags = inner.tags
        self.query_types = inner.query_types
        self.order_id = order_id
        self.poisoned = threading.Event()
        self.poisoned.set()

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Raise for the poison order, else apply."""
        if self.poisoned.is_set() and getattr(record.event, "order_id", None) == self.order_id:
            raise RuntimeError(f"poison order {self.order_id} at {record.position}")
        self.inner.apply(storage, record)

    def query(self, storage: Storage, query: object) -> object:
        """Delegate."""
        return self.inner.query(storage, query)


def poisoned_views(name: str, order_id: str) -> tuple[list[View], PoisonModel]:
    """The four order views in memory, the one called ``name`` with a poisoned read model."""
    views = order_views(None)
    index = [view.name for view in views].index(name)
    models: list[ReadModel] = [
        OrderDetailsModel(),
        CustomerOrdersModel(),
        OrderSearchModel(),
        OrderStatsModel(),
    ]
    poison = PoisonModel(models[index], order_id)
    views[index] = MemoryView(poison)
    return views, poison


class CountingView(WrappedView):
    """Counts the queries that reached the view."""

    def __init__(self, inner: View) -> None:
        super().__init__(inner)
        self.queries = 0

    def query(self, query: object) -> object:
        """Count, then answer."""
        self.queries += 1
        return super().query(query)


class FlakyView(WrappedView):
    """A real view whose storage fails: its apply (rows or checkpoint) raises ``lmdb.DiskError``.

    It fails while ``failing`` is set, and for its next ``fail_next(n)`` applies; ``failures``
    counts the applies that failed. Nothing reaches the real view on a failed apply, as with an
    LMDB write transaction that does not commit.
    """

    def __init__(self, inner: View) -> None:
        super().__init__(inner)
        self.failing = threading.Event()
        self.failures = 0
        self._remaining = 0
        self._lock = threading.Lock()

    def fail_next(self, times: int) -> None:
        """Fail the next ``times`` applies."""
        with self._lock:
            self._remaining = times

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Raise as a failing views environment would, or apply."""
        with self._lock:
            fail = self.failing.is_set() or self._remaining > 0
            if fail:
                self._remaining = max(0, self._remaining - 1)
                self.failures += 1
        if fail:
            raise lmdb.DiskError(f"mdb_txn_commit: injected I/O error ({self.name} up to {up_to})")
        super().apply(events, up_to)
