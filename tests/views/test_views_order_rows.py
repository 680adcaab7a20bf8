"""The order fold: shared by every order view of a thread, never at the cost of a right answer."""

import threading

import msgspec
import pytest
from views_kit import EPOCH, OrderLog, random_log

from domain.orders import OrderCreated, OrderShipped
from views import MemoryView
from views._order_rows import OrderRow, evolve, shared_evolve
from views.orders import (
    CustomerOrdersModel,
    GetCustomerOrders,
    GetOrderById,
    OrderDetailsModel,
    OrderStatsModel,
)

TIMEOUT = 30


def _fold_all(log: OrderLog, fold: object) -> dict[str, OrderRow]:
    rows: dict[str, OrderRow] = {}
    for record in log.records:
        order_id = record.event.order_id  # type: ignore[attr-defined]
        rows[order_id] = fold(rows.get(order_id), record.event, record.position)  # type: ignore[operator]
    return rows


def test_the_shared_fold_equals_the_plain_fold() -> None:
    log = random_log(seed=31, commands=300)
    assert _fold_all(log, shared_evolve) == _fold_all(log, evolve)


def test_views_fed_the_same_batch_hold_the_same_row_objects() -> None:
    log = random_log(seed=32, commands=200)
    details, customers, stats = (
        MemoryView(model()) for model in (OrderDetailsModel, CustomerOrdersModel, OrderStatsModel)
    )
    for view in (details, customers, stats):
        view.apply(log.records, len(log.records))
    customer_ids = {r.event.customer_id for r in log.records if isinstance(r.event, OrderCreated)}
    seen = 0
    for customer_id in customer_ids:
        page = customers.query(GetCustomerOrders(customer_id, page_size=1000))
        for item in page.items:  # type: ignore[attr-defined]
            # The very object the details view answers: one row shared, not a copy per view.
            assert details.query(GetOrderById(item.order_id)) is item
            seen += 1
    assert seen == len(log.states)


def test_a_row_that_is_only_equal_is_folded_again() -> None:
    log = random_log(seed=33, commands=40)
    record = next(r for r in log.records[1:] if r.event.order_id == log.records[0].event.order_id)  # type: ignore[attr-defined]
    created = shared_evolve(None, log.records[0].event, log.records[0].position)  # type: ignore[arg-type]
    copy = msgspec.msgpack.decode(msgspec.msgpack.encode(created), type=OrderRow)
    assert copy == created
    assert copy is not created
    first = shared_evolve(created, record.event, record.position)  # type: ignore[arg-type]
    second = shared_evolve(copy, record.event, record.position)  # type: ignore[arg-type]
    assert first == second
    assert first is not second  # not taken from the memo: its row was another object


def test_a_poison_event_fails_every_view_and_is_not_remembered() -> None:
    poison = OrderShipped(order_id="never-created", shipped_at=EPOCH)
    for _ in range(2):
        with pytest.raises(ValueError, match="never-created"):
            shared_evolve(None, poison, 99)


def test_each_thread_folds_for_itself() -> None:
    log = random_log(seed=34, commands=120)
    results: list[dict[str, OrderRow]] = []
    threads = [
        threading.Thread(target=lambda: results.append(_fold_all(log, shared_evolve)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(results) == 3
    assert all(result == _fold_all(log, evolve) for result in results)


def test_folds_of_other_logs_at_the_same_positions_never_stop_the_sharing() -> None:
    for seed in range(6):  # other logs' folds fill every position's memo first
        _fold_all(random_log(seed=100 + seed, commands=60), shared_evolve)
    test_views_fed_the_same_batch_hold_the_same_row_objects()
