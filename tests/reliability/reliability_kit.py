"""Helpers for the reliability tests: deterministic commands, child processes, log checks.

Commands are rebuilt from their id alone (:func:`command_for`), so a parent process can re-send
exactly the command a killed child acknowledged (same fingerprint) and prove idempotency across
a crash. The log checks read the store the way a user would (``read_all``, ``read_stream``,
``lookup_command``) and compare it with an independent model built through ``ORDERS.evolve``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from child_process import ChildProcess

from actors import Engine
from domain.orders import (
    ORDERS,
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderCommand,
    OrderItem,
    OrderState,
    RemoveOrderItem,
    ShipOrder,
    order_total,
)
from store import EventStore, RecordedEvent, StreamAppend
from views.orders import (
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderStats,
    SearchOrders,
)

CHILD = Path(__file__).resolve().with_name("reliability_child.py")
ADDRESS = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")
STEPS = 5  # commands per order: create, three adds, then ship / cancel / remove
PRODUCTS = 7
THREADS = 3
REASON = "customer changed their mind"


# ---------------------------------------------------------------- deterministic commands


def price_of(product: int) -> Decimal:
    """Return the one price of product ``p<product>`` (same product, same price: no mismatch)."""
    return Decimal(f"{product + 1}.25")


def command_id(tag: str, thread: int, order: int, step: int) -> str:
    """Return the id of a command; :func:`command_for` rebuilds the command from it."""
    return f"{tag}.{thread}.{order}.{step}"


def command_for(cid: str) -> OrderCommand:
    """Rebuild the command whose id is ``cid`` (every field is a function of the id)."""
    tag, thread_s, order_s, step_s = cid.split(".")
    thread, order, step = int(thread_s), int(order_s), int(step_s)
    order_id = f"{tag}-t{thread}-o{order}"
    if step == 0:
        first = order % PRODUCTS
        return CreateOrder(
            order_id=order_id,
            customer_id=f"cust-{thread}",
            items=[
                OrderItem(product_id=f"p{first}", quantity=1 + order % 3, price=price_of(first))
            ],
            shipping_address=ADDRESS,
            command_id=cid,
        )
    if step < STEPS - 1:
        product = (order + step) % PRODUCTS
        return AddOrderItem(
            order_id=order_id,
            product_id=f"p{product}",
            quantity=step,
            price=price_of(product),
            command_id=cid,
        )
    if order % 3 == 0:
        return ShipOrder(order_id=order_id, command_id=cid)
    if order % 3 == 1:
        return CancelOrder(order_id=order_id, reason=REASON, command_id=cid)
    return RemoveOrderItem(
        order_id=order_id, product_id=f"p{(order + 1) % PRODUCTS}", command_id=cid
    )


# ---------------------------------------------------------------- child processes


class Child(ChildProcess):
    """A child process running ``reliability_child.py`` ``*args``: see :class:`ChildProcess`."""

    def __init__(self, *args: str) -> None:
        super().__init__(CHILD, *args)


@dataclass(frozen=True)
class Ack:
    """One acknowledged command as the child printed it."""

    command_id: str
    aggregate_id: str
    version: int
    position: int


def parse_ack(fields: Sequence[str]) -> Ack:
    """Parse the fields of an ``ACK`` line."""
    cid, aggregate_id, version, position = fields
    return Ack(cid, aggregate_id, int(version), int(position))


def read_acks(child: Child, count: int, timeout: float = 60.0) -> list[Ack]:
    """Read ``count`` ACK lines from ``child`` (any other line but ERR is skipped)."""
    deadline = time.monotonic() + timeout
    return [
        parse_ack(child.expect("ACK", max(0.01, deadline - time.monotonic()))) for _ in range(count)
    ]


# ---------------------------------------------------------------- the log and its model


@dataclass
class LogModel:
    """What the log says, folded through the pure decider (no view code involved)."""

    events: list[RecordedEvent] = field(default_factory=list)
    states: dict[str, OrderState] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def stats(self) -> OrderStats:
        """Return the :class:`OrderStats` the contract defines for these states."""
        by_status = dict.fromkeys(("pending", "shipped", "cancelled"), 0)
        revenue = Decimal(0)
        units: dict[str, int] = defaultdict(int)
        for state in self.states.values():
            by_status[state.status] += 1
            if state.status == "shipped":
                revenue += order_total(state.items)
            if state.status != "cancelled":
                for item in state.items:
                    units[item.product_id] += item.quantity
        top = sorted(((p, u) for p, u in units.items() if u), key=lambda pu: (-pu[1], pu[0]))
        return OrderStats(
            total_orders=len(self.states),
            by_status=by_status,
            revenue=revenue,
            top_products=top[:10],
        )


def check_log(store: EventStore) -> LogModel:
    """Read the whole log and assert the engine's log invariants; return the folded model.

    Positions are 1..head without a gap, each stream's versions are 1..n without a gap, the
    stream index agrees with the log, and every command's events are all there (no torn batch).
    """
    model = LogModel()
    for batch in store.read_all(1, 1000):
        model.events.extend(batch)
    head = store.head()
    assert [e.position for e in model.events] == list(range(1, head + 1))
    by_command: dict[str, list[RecordedEvent]] = defaultdict(list)
    for event in model.events:
        version = model.versions.get(event.stream_id, 0) + 1
        assert event.version == version, (event.stream_id, event.version, version)
        model.versions[event.stream_id] = version
        model.states[event.stream_id] = ORDERS.evolve(
            model.states.get(event.stream_id, ORDERS.initial()), event.event
        )
        by_command[event.command_id].append(event)
    for stream_id, version in model.versions.items():
        assert store.stream_version(stream_id, stream_type="order") == version
        stream = store.read_stream(stream_id, stream_type="order")
        assert [e.version for e in stream] == list(range(1, version + 1))
    for cid, events in by_command.items():
        record = store.lookup_command(cid)
        assert record is not None, cid
        assert [e.position for e in events] == list(
            range(record.first_position, record.last_position + 1)
        ), cid
        assert record.version == events[-1].version
    return model


def check_acks(store: EventStore, acks: Sequence[Ack]) -> None:
    """Assert every acknowledged command is in the log exactly as it was acknowledged."""
    for ack in acks:
        record = store.lookup_command(ack.command_id)
        assert record is not None, f"acknowledged command {ack.command_id} was lost"
        assert (record.stream_id, record.version, record.last_position) == (
            ack.aggregate_id,
            ack.version,
            ack.position,
        )
        (event,) = store.read_stream(ack.aggregate_id, ack.version, stream_type="order")[:1]
        assert (event.version, event.position, event.command_id) == (
            ack.version,
            ack.position,
            ack.command_id,
        )


def view_answers(engine: Engine, customers: Sequence[str], orders: Sequence[str]) -> list[Any]:
    """Ask every view a set of questions whose answers cover all their rows."""
    answers: list[Any] = [engine.query(GetOrderStats())]
    page = 1
    while True:
        found = engine.query(SearchOrders(page=page, page_size=1000, sort_by="total_amount"))
        answers.append(found)
        if page >= found.total_pages:
            break
        page += 1
    for customer in customers:
        page = 1
        while True:
            mine = engine.query(GetCustomerOrders(customer, page=page, page_size=1000))
            answers.append(mine)
            if page >= mine.total_pages:
                break
            page += 1
    answers.extend(engine.query(GetOrderById(order_id)) for order_id in orders)
    return answers


def check_views_match_rebuild(engine: Engine, model: LogModel) -> None:
    """Catch the views up, compare them with the model, rebuild, and compare again."""
    assert engine.wait_for_views(timeout=60)
    customers = sorted({s.customer_id for s in model.states.values()})
    orders = sorted(model.states)
    live = view_answers(engine, customers, orders)
    assert live[0] == model.stats()
    engine.rebuild()
    assert engine.wait_for_views(timeout=60)
    assert view_answers(engine, customers, orders) == live


# ---------------------------------------------------------------- writing logs fast


def write_orders(store: EventStore, tag: str, orders: int, batch: int = 500) -> int:
    """Append ``orders`` complete orders (STEPS commands each) straight through the store.

    Every event comes from ``ORDERS.decide`` on the current state, so views see a valid log.
    Returns the new head.
    """
    states: dict[str, OrderState] = {}
    versions: dict[str, int] = {}
    pending: list[StreamAppend] = []
    from actors._aggregate import utc_now  # noqa: PLC0415 - only the time source is borrowed

    def flush() -> None:
        results = store.append_batch(pending)
        assert all(not isinstance(r, Exception) for r in results)
        pending.clear()

    for order in range(orders):
        for step in range(STEPS):
            command = command_for(command_id(tag, 0, order, step))
            order_id = ORDERS.aggregate_id(command)
            state = states.get(order_id, ORDERS.initial())
            events = tuple(ORDERS.decide(state, command, utc_now()))
            for event in events:
                state = ORDERS.evolve(state, event)
            states[order_id] = state
            version = versions.get(order_id, 0)
            versions[order_id] = version + len(events)
            pending.append(
                StreamAppend(
                    stream_id=order_id,
                    stream_type="order",
                    expected_version=version,
                    events=events,
                    command_id=command.command_id,
                )
            )
            if len(pending) >= batch:
                flush()
    if pending:
        flush()
    return store.head()


def all_commands(tag: str, orders: int) -> Iterator[OrderCommand]:
    """Yield the commands of ``orders`` orders of thread 0, step by step, order by order."""
    for order in range(orders):
        for step in range(STEPS):
            yield command_for(command_id(tag, 0, order, step))
