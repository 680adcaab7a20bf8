"""Helpers for the views tests: an order log built through the real decider, and a reference.

The reference answers every order query from the decider's own states with plain dicts, lists
and ``sorted`` -- no code shared with views/ -- so the views are checked against an independent
model of the contract.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from domain.errors import AggregateNotFound, CommandRejected
from domain.orders import (
    ORDERS,
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderCommand,
    OrderCreated,
    OrderItem,
    OrderShipped,
    OrderState,
    RemoveOrderItem,
    ShipOrder,
)
from store import RecordedEvent, ViewStore
from views import Backend, View
from views._view import Storage
from views.orders import (
    QUERY_VIEW,
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderStats,
    OrderView,
    Page,
    SearchOrders,
    order_views,
)

ADDRESS = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")
EPOCH = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STATUSES = ("pending", "shipped", "cancelled")
SORTS = ("created_at", "total_amount", "item_count")


@dataclass
class OrderLog:
    """Runs commands through the real decider and records the events as the log would."""

    records: list[RecordedEvent] = field(default_factory=list)
    states: dict[str, OrderState] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)  # order id -> creating position
    versions: dict[str, int] = field(default_factory=dict)

    def run(self, command: OrderCommand, now: datetime = EPOCH) -> RecordedEvent | None:
        """Execute ``command``; return its recorded event, or None if it was rejected."""
        order_id = ORDERS.aggregate_id(command)
        state = self.states.get(order_id, ORDERS.initial())
        try:
            (event,) = ORDERS.decide(state, command, now)
        except (CommandRejected, AggregateNotFound):
            return None
        return self._record(order_id, event, command.command_id)

    def _record(self, order_id: str, event: Any, command_id: str) -> RecordedEvent:
        state = self.states.get(order_id, ORDERS.initial())
        position = len(self.records) + 1
        version = self.versions.get(order_id, 0) + 1
        tag = type(event).__struct_config__.tag
        assert isinstance(tag, str)
        record = RecordedEvent(
            position=position,
            stream_id=order_id,
            stream_type="order",
            version=version,
            tag=tag,
            schema_version=1,
            timestamp=position,
            command_id=command_id,
            event=event,
        )
        self.records.append(record)
        self.versions[order_id] = version
        self.states[order_id] = ORDERS.evolve(state, event)
        self.created.setdefault(order_id, position)
        return record

    def create(
        self,
        order_id: str,
        customer_id: str,
        *lines: tuple[str, int, str],
        at: int = 0,
        legacy: bool = False,
    ) -> RecordedEvent:
        """Create an order from ``(product_id, quantity, price)`` lines, ``at`` minutes in.

        ``legacy=True`` records the event without deciding it: ids outside today's grammar, as
        a log written before it (or another decider's events) may hold, which views must keep.
        """
        items = [OrderItem(product_id=p, quantity=q, price=Decimal(price)) for p, q, price in lines]
        if legacy:
            event = OrderCreated(
                order_id=order_id,
                customer_id=customer_id,
                items=tuple(items),
                shipping_address=ADDRESS,
                created_at=EPOCH + timedelta(minutes=at),
            )
            return self._record(order_id, event, f"legacy-{len(self.records)}")
        command = CreateOrder(
            order_id=order_id, customer_id=customer_id, items=items, shipping_address=ADDRESS
        )
        record = self.run(command, EPOCH + timedelta(minutes=at))
        assert record is not None
        return record

    def do(self, command: OrderCommand, at: int = 0) -> RecordedEvent:
        """Execute a command that must be accepted."""
        record = self.run(command, EPOCH + timedelta(minutes=at))
        assert record is not None, command
        return record

    def upto(self, position: int) -> OrderLog:
        """Return the log as it was at ``position``."""
        prefix = OrderLog()
        for record in self.records[:position]:
            prefix._replay(record)
        return prefix

    def _replay(self, record: RecordedEvent) -> None:
        order_id = record.stream_id
        self.records.append(record)
        self.versions[order_id] = record.version
        self.states[order_id] = ORDERS.evolve(self.states.get(order_id, OrderState()), record.event)
        self.created.setdefault(order_id, record.position)


def random_log(
    seed: int,
    commands: int,
    customers: int = 6,
    products: int = 14,
    *,
    uuid_ids: bool = False,
    case_twins: bool = False,
) -> OrderLog:
    """A log of ``commands`` random commands (rejected ones leave no event) with tied times.

    ``uuid_ids``: order and customer ids are canonical UUIDs (the LMDB views store them packed).
    ``case_twins``: distinct ids that casefold alike: products ``sku-01`` and ``SKU-01``, a
    customer ``Sku-02`` (one search text owned twice by one order).
    """
    rng = random.Random(seed)
    log = OrderLog()

    def uuid_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128)))

    customer_ids = [uuid_id() if uuid_ids else f"Cust-{i}" for i in range(customers)]
    product_ids = [f"sku-{i:02d}" for i in range(products)]
    if case_twins:
        product_ids += [p.upper() for p in product_ids[: products // 2]]
        customer_ids[0] = "Sku-02"
    order_ids: list[str] = []
    for step in range(commands):
        now = EPOCH + timedelta(minutes=rng.randrange(20))  # ties and out-of-order times
        roll = rng.random()
        if roll < 0.35 or not order_ids:
            order_id = uuid_id() if uuid_ids else f"ORD-{step:04d}"
            items = [
                OrderItem(
                    product_id=rng.choice(product_ids),
                    quantity=rng.randint(1, 5),
                    price=Decimal(rng.randint(0, 2000)) / 100,
                )
                for _ in range(rng.randint(1, 3))
            ]
            command: OrderCommand = CreateOrder(
                order_id=order_id,
                customer_id=rng.choice(customer_ids),
                items=items,
                shipping_address=ADDRESS,
            )
        else:
            order_id = rng.choice(order_ids)
            state = log.states[order_id]
            product = rng.choice(product_ids)
            existing = {item.product_id: item.price for item in state.items}
            if roll < 0.6:
                price = existing.get(product, Decimal(rng.randint(1, 900)) / 10)
                command = AddOrderItem(
                    order_id=order_id, product_id=product, quantity=rng.randint(1, 4), price=price
                )
            elif roll < 0.72 and state.items:
                command = RemoveOrderItem(
                    order_id=order_id, product_id=rng.choice(state.items).product_id
                )
            elif roll < 0.88:
                command = ShipOrder(order_id=order_id)
            else:
                command = CancelOrder(order_id=order_id, reason="changed my mind")
        if log.run(command, now) is not None and isinstance(command, CreateOrder):
            order_ids.append(order_id)
    return log


# ---------------------------------------------------------------- the reference model


def ref_view(log: OrderLog, order_id: str) -> OrderView | None:
    state = log.states.get(order_id)
    if state is None:
        return None
    assert state.created_at is not None
    return OrderView(
        order_id=state.order_id,
        customer_id=state.customer_id,
        status=state.status,
        total_amount=sum((i.price * i.quantity for i in state.items), Decimal(0)),
        item_count=sum(i.quantity for i in state.items),
        created_at=state.created_at,
        shipped_at=state.shipped_at,
    )


def _all_views(log: OrderLog) -> list[OrderView]:
    views = [ref_view(log, order_id) for order_id in log.states]
    return [view for view in views if view is not None]


def _page(items: list[OrderView], page: int, page_size: int) -> Page[OrderView]:
    total = len(items)
    chunk = items[(page - 1) * page_size : page * page_size]
    pages = (total + page_size - 1) // page_size
    return Page(items=chunk, total=total, page=page, page_size=page_size, total_pages=pages)


def ref_customer_orders(log: OrderLog, query: GetCustomerOrders) -> Page[OrderView]:
    matching = [
        v
        for v in _all_views(log)
        if v.customer_id == query.customer_id and query.status in {None, v.status}
    ]
    matching.sort(key=lambda v: log.created[v.order_id], reverse=True)
    return _page(matching, query.page, query.page_size)


def ref_search(log: OrderLog, query: SearchOrders) -> Page[OrderView]:
    needle = query.query.casefold()

    def hit(view: OrderView) -> bool:
        products = [item.product_id for item in log.states[view.order_id].items]
        texts = [view.order_id, view.customer_id, *products]
        return (
            (query.status is None or view.status == query.status)
            and (query.min_total is None or view.total_amount >= query.min_total)
            and (query.max_total is None or view.total_amount <= query.max_total)
            and any(needle in text.casefold() for text in texts)
        )

    matching = [view for view in _all_views(log) if hit(view)]
    matching.sort(
        key=lambda v: (getattr(v, query.sort_by), log.created[v.order_id]),
        reverse=query.sort_order == "desc",
    )
    return _page(matching, query.page, query.page_size)


def ref_stats(log: OrderLog) -> OrderStats:
    views = _all_views(log)
    units: dict[str, int] = {}
    for state in log.states.values():
        if state.status != "cancelled":
            for item in state.items:
                units[item.product_id] = units.get(item.product_id, 0) + item.quantity
    ranked = sorted(((p, u) for p, u in units.items() if u), key=lambda pu: (-pu[1], pu[0]))
    return OrderStats(
        total_orders=len(views),
        by_status={s: sum(v.status == s for v in views) for s in STATUSES},
        revenue=sum((v.total_amount for v in views if v.status == "shipped"), Decimal(0)),
        top_products=ranked[:10],
    )


def reference(log: OrderLog, query: object) -> object:
    """The reference answer to any order query."""
    if isinstance(query, GetCustomerOrders):
        return ref_customer_orders(log, query)
    if isinstance(query, SearchOrders):
        return ref_search(log, query)
    if isinstance(query, GetOrderStats):
        return ref_stats(log)
    assert isinstance(query, GetOrderById)
    return ref_view(log, query.order_id)


# ---------------------------------------------------------------- running views


def open_store(path: Path) -> ViewStore:
    """The views environment LMDB views live in (apart from any log)."""
    return ViewStore.open(path)


@dataclass
class Rig:
    """The four order views on one backend, with routing like the engine's."""

    backend: Backend
    views: dict[str, View]
    store: ViewStore | None

    def view_for(self, query: object) -> View:
        return self.views[QUERY_VIEW[type(query)]]

    def ask(self, query: object) -> object:
        return self.view_for(query).query(query)

    def apply(self, records: Sequence[RecordedEvent], up_to: int | None = None) -> None:
        target = records[-1].position if up_to is None and records else up_to or 0
        for view in self.views.values():
            view.apply(records, target)

    def close(self) -> None:
        for view in self.views.values():
            view.close()
        if self.store is not None:
            self.store.close()


@contextmanager
def open_rig(backend: Backend, path: Path) -> Iterator[Rig]:
    """All four order views on ``backend`` (LMDB ones in a store at ``path``)."""
    store = open_store(path) if backend == "lmdb" else None
    backends: dict[str, Backend] = dict.fromkeys(
        ("order_details", "customer_orders", "order_search", "order_stats"), backend
    )
    rig = Rig(
        backend=backend,
        views={v.name: v for v in order_views(store, backends=backends)},
        store=store,
    )
    try:
        yield rig
    finally:
        rig.close()


def encoded(answer: object) -> bytes:
    """A canonical byte form of an answer, to compare answers or use them as dict keys."""
    return msgspec.json.encode(answer)


def sample_queries(log: OrderLog) -> list[object]:
    """A spread of queries over ``log``: every view, filters, sorts and pages."""
    customers = sorted({s.customer_id for s in log.states.values()})[:3]
    queries: list[object] = [GetOrderStats(), SearchOrders(), SearchOrders(page_size=1000)]
    queries += [GetCustomerOrders(c, page_size=3) for c in customers]
    queries += [GetCustomerOrders(c, status="pending") for c in customers]
    queries += [SearchOrders(sort_by=s, sort_order=o) for s in SORTS for o in ("asc", "desc")]
    queries += [
        SearchOrders(query="sku-0", status="pending", sort_by="total_amount", page=2, page_size=2),
        SearchOrders(query="cust-1", min_total=Decimal(10), max_total=Decimal(60)),
    ]
    queries += [GetOrderById(order_id) for order_id in list(log.states)[:5]]
    return queries


def check_answers(views: Sequence[View], log: OrderLog, *, only: bool = False) -> None:
    """Check every sample query against the reference (``only``: those ``views`` answer)."""
    by_type = {t: v for v in views for t in v.query_types}
    for query in sample_queries(log):
        if only and type(query) not in by_type:
            continue
        assert by_type[type(query)].query(query) == reference(log, query), query


# ---------------------------------------------------------------- failing read models


def poison(log: OrderLog) -> RecordedEvent:
    """An event after ``log``'s last for an order never created: every order view refuses it."""
    return msgspec.structs.replace(
        log.records[0],
        position=len(log.records) + 1,
        event=OrderShipped(order_id="never-created", shipped_at=EPOCH),
    )


class Basket(msgspec.Struct):
    """A mutable row: never kept, since a model may change it in place and then fail."""

    events: list[int]


class Mutating:
    """Counts events per order in a mutable row, changing the row it read in place."""

    name = "mutating"
    tags: frozenset[str] | None = None
    query_types: tuple[type, ...] = (str,)

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        table = storage.table("basket", Basket)
        row = table.get("all") or Basket(events=[])
        row.events.append(record.position)  # in place, before the check below may raise
        if isinstance(record.event, OrderShipped) and record.event.order_id == "never-created":
            raise ValueError("poison")
        table.put("all", row)

    def query(self, storage: Storage, query: object) -> object:
        del query
        row = storage.table("basket", Basket).get("all")
        return None if row is None else row.events
