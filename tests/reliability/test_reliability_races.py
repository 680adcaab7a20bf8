"""Optimistic concurrency from many threads on one order: every conflict is reported as
ConcurrencyConflict, and no update is lost."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

from reliability_kit import check_log, command_for

from actors import ConcurrencyConflict, Engine
from domain.orders import AddOrderItem
from views.orders import GetOrderById

THREADS = 8
ADDS_PER_THREAD = 15


def test_racing_read_then_write_loops_report_every_conflict_and_lose_no_update(
    tmp_path: Path,
) -> None:
    order_id = "race-t0-o0"
    with Engine.open(tmp_path / "data", durability="async") as engine:
        created = engine.execute(command_for("race.0.0.0"))  # one line of p0, quantity 1
        successes = [0] * THREADS
        conflicts: list[ConcurrencyConflict] = []
        errors: list[BaseException] = []
        guard = threading.Lock()
        start = threading.Barrier(THREADS, timeout=30)

        def work(thread: int) -> None:
            try:
                start.wait()
                while successes[thread] < ADDS_PER_THREAD:
                    version = engine.store.stream_version(order_id, stream_type="order")
                    add = AddOrderItem(
                        order_id=order_id,
                        product_id=f"p{thread % 3}",
                        quantity=thread + 1,
                        price=Decimal(f"{thread % 3 + 1}.25"),
                        expected_version=version,
                    )
                    try:
                        engine.execute(add)
                    except ConcurrencyConflict as conflict:
                        with guard:
                            conflicts.append(conflict)
                    else:
                        successes[thread] += 1
            except BaseException as error:
                errors.append(error)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert errors == []
        assert conflicts, "eight threads on one order must have raced at least once"
        for conflict in conflicts:
            assert conflict.aggregate_id == order_id
            assert isinstance(conflict.expected, int)
            assert isinstance(conflict.actual, int)
            assert conflict.actual > conflict.expected
        model = check_log(engine.store)
        state = model.states[order_id]
        added = sum((t + 1) * ADDS_PER_THREAD for t in range(THREADS))
        assert sum(item.quantity for item in state.items) == 1 + added
        assert model.versions[order_id] == created.version + THREADS * ADDS_PER_THREAD
        for product in range(3):
            expected = sum(
                (t + 1) * ADDS_PER_THREAD for t in range(THREADS) if t % 3 == product
            ) + (1 if product == 0 else 0)
            assert {i.product_id: i.quantity for i in state.items}[f"p{product}"] == expected
        head = engine.store.head()
        view = engine.query(GetOrderById(order_id), after=head)
        assert view is not None
        assert view.item_count == 1 + added
