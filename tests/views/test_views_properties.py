"""Properties: batching never changes an answer, and both backends answer alike."""

import tempfile
from datetime import timedelta
from decimal import Decimal
from itertools import cycle
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from views_kit import (
    ADDRESS,
    EPOCH,
    OrderLog,
    encoded,
    open_rig,
    reference,
    sample_queries,
)

from domain.orders import (
    AddOrderItem,
    CancelOrder,
    CreateOrder,
    OrderCommand,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)
from store import RecordedEvent
from views import Backend
from views.orders import GetOrderStats, SearchOrders

# One action: (kind, order, customer, product, quantity, price in cents, minutes after EPOCH).
# Few ids, so that actions hit the same orders, customers and products often.
ACTIONS = st.tuples(
    st.integers(0, 4),
    st.integers(0, 5),
    st.integers(0, 2),
    st.integers(0, 4),
    st.integers(1, 4),
    st.integers(0, 999),
    st.integers(0, 5),
)
Action = tuple[int, int, int, int, int, int, int]


def _log(actions: list[Action]) -> OrderLog:
    log = OrderLog()
    for kind, order, customer, product, quantity, cents, minutes in actions:
        order_id, product_id = f"O{order}", f"P{product}"
        price = Decimal(cents) / 100
        state = log.states.get(order_id)
        if state is not None:  # reuse the price on file: a mismatch would just be rejected
            price = next((i.price for i in state.items if i.product_id == product_id), price)
        commands: list[OrderCommand] = [
            CreateOrder(
                order_id=order_id,
                customer_id=f"C{customer}",
                items=[OrderItem(product_id=product_id, quantity=quantity, price=price)],
                shipping_address=ADDRESS,
            ),
            AddOrderItem(order_id=order_id, product_id=product_id, quantity=quantity, price=price),
            RemoveOrderItem(order_id=order_id, product_id=product_id),
            ShipOrder(order_id=order_id),
            CancelOrder(order_id=order_id, reason="because"),
        ]
        log.run(commands[kind], EPOCH + timedelta(minutes=minutes))
    return log


def _batches(records: list[RecordedEvent], sizes: list[int]) -> list[list[RecordedEvent]]:
    batches: list[list[RecordedEvent]] = []
    start = 0
    for size in cycle(sizes):
        if start >= len(records):
            return batches
        batches.append(records[start : start + size])
        start += size
    return batches  # pragma: no cover - cycle() never ends


def _answers(backend: Backend, path: Path, batches: list[list[RecordedEvent]]) -> list[bytes]:
    with open_rig(backend, path) as rig:
        for batch in batches:
            rig.apply(batch)
        log = OrderLog()
        for batch in batches:
            for record in batch:
                log._replay(record)
        queries = [*sample_queries(log), SearchOrders(query="p1"), GetOrderStats()]
        return [encoded(rig.ask(query)) for query in queries]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    actions=st.lists(ACTIONS, min_size=1, max_size=60),
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=5),
)
def test_batched_applies_answer_like_one_by_one_on_both_backends(
    actions: list[Action], sizes: list[int]
) -> None:
    log = _log(actions)
    one_by_one = [[record] for record in log.records]
    batched = _batches(log.records, sizes)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        expected = _answers("memory", root / "m1", one_by_one)
        assert _answers("memory", root / "m2", batched) == expected
        assert _answers("lmdb", root / "l1", batched) == expected
        assert _answers("lmdb", root / "l2", one_by_one) == expected
    queries = [*sample_queries(log), SearchOrders(query="p1"), GetOrderStats()]
    assert expected == [encoded(reference(log, query)) for query in queries]
