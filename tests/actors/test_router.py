"""The query router through the engine: answers, validation, read-your-writes, staleness."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from readside_kit import (
    WAIT,
    CountingView,
    GatedView,
    OrderModel,
    StepClock,
    assert_answers,
    create,
    random_steps,
    run,
    run_steps,
)
from waiting import wait_until

from actors import Engine
from domain.errors import ConsistencyTimeout, InvalidQuery, UnknownView
from domain.orders import AddOrderItem, ShipOrder
from views import View
from views.orders import (
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderView,
    SearchOrders,
    order_views,
)


def counted_views() -> list[CountingView]:
    return [CountingView(view) for view in order_views(None)]


def test_every_query_answer_equals_the_model_built_from_the_commands(tmp_path: Path) -> None:
    model = OrderModel()
    with Engine.open(tmp_path, durability="async", clock=StepClock()) as engine:
        run_steps(engine, model, random_steps(seed=7, count=160))
        assert len(model.orders) > 20
        assert_answers(engine, model, model.probes())


def test_answers_are_the_same_on_memory_and_lmdb_backends(tmp_path: Path) -> None:
    lmdb_model = OrderModel()
    backends: dict[str, Any] = dict.fromkeys(
        ("order_details", "customer_orders", "order_search", "order_stats"), "lmdb"
    )
    with Engine.open(tmp_path / "lmdb", view_backends=backends, clock=StepClock()) as engine:
        run_steps(engine, lmdb_model, random_steps(seed=8, count=80))
        assert_answers(engine, lmdb_model, lmdb_model.probes())
        assert {s.backend for s in engine.status().views.values()} == {"lmdb"}
    memory_model = OrderModel()
    with Engine.open(tmp_path / "mem", views=order_views(None), clock=StepClock()) as engine:
        run_steps(engine, memory_model, random_steps(seed=8, count=80))
        assert_answers(engine, memory_model, memory_model.probes())
        assert {s.backend for s in engine.status().views.values()} == {"memory"}


def test_pagination_edges_match_the_model(tmp_path: Path) -> None:
    model = OrderModel()
    with Engine.open(tmp_path, durability="async") as engine:
        for number in range(7):
            run(engine, model, create(f"o-{number}", "Cust-1", ("sku-1", number + 1, Decimal(1))))
        edges = [
            GetCustomerOrders("Cust-1", page=1, page_size=7),  # exactly one full page
            GetCustomerOrders("Cust-1", page=2, page_size=7),  # just past it: empty
            GetCustomerOrders("Cust-1", page=3, page_size=3),  # a last, partial page
            GetCustomerOrders("Cust-1", page=10**6, page_size=1000),
            GetCustomerOrders("Cust-1", page=1, page_size=1),
            GetCustomerOrders("Cust-1", page=7, page_size=1),
            GetCustomerOrders("Cust-1", page=8, page_size=1),
            GetCustomerOrders("nobody"),  # nothing: total_pages 0
            SearchOrders(page=4, page_size=2, sort_by="item_count", sort_order="asc"),
            SearchOrders(page=1, page_size=1000),
            SearchOrders(query="zzz"),
        ]
        assert_answers(engine, model, edges)
        page = engine.query(GetCustomerOrders("Cust-1", page=3, page_size=3))
        assert (page.total, page.total_pages, len(page.items)) == (7, 3, 1)
        assert page.items[0].order_id == "o-0"  # newest first: the oldest is last
        empty = engine.query(GetCustomerOrders("nobody"))
        assert (empty.items, empty.total, empty.total_pages) == ([], 0, 0)


BAD_QUERIES: list[Any] = [
    GetCustomerOrders("c", page=0),
    GetCustomerOrders("c", page=-1),
    GetCustomerOrders("c", page_size=0),
    GetCustomerOrders("c", page_size=1001),
    GetCustomerOrders("c", status="lost"),
    GetCustomerOrders("c", page=True),
    GetCustomerOrders(42),  # type: ignore[arg-type]
    SearchOrders(page=0),
    SearchOrders(page_size=0),
    SearchOrders(page_size=1001),
    SearchOrders(sort_by="price"),
    SearchOrders(sort_order="up"),
    SearchOrders(status="PENDING"),
    SearchOrders(min_total=1.5),  # type: ignore[arg-type]
    SearchOrders(max_total=Decimal("NaN")),
    SearchOrders(query=None),  # type: ignore[arg-type]
    GetOrderById(None),  # type: ignore[arg-type]
    "GetOrderStats",
    object(),
]


@pytest.mark.parametrize("query", BAD_QUERIES, ids=repr)
def test_an_invalid_query_raises_before_any_view_is_touched(tmp_path: Path, query: Any) -> None:
    views = counted_views()
    with Engine.open(tmp_path, durability="async", views=views) as engine:
        result = engine.execute(create("o-1"))
        with pytest.raises(InvalidQuery):
            engine.query(query)
        with pytest.raises(InvalidQuery):  # also when read-your-writes was asked for
            engine.query(query, after=result.position + 1000, timeout=WAIT)
        with pytest.raises(InvalidQuery):
            asyncio.run(engine.query_async(query, after=result.position))
        assert [view.queries for view in views] == [0, 0, 0, 0]
        # the router still serves (after=: under load the view may not have applied it yet)
        assert engine.query(GetOrderById("o-1"), after=result.position) is not None


def test_a_query_nobody_serves_raises_unknown_view(tmp_path: Path) -> None:
    only_details: list[View] = [order_views(None)[0]]
    with Engine.open(tmp_path, durability="async", views=only_details) as engine:
        with pytest.raises(UnknownView):
            engine.query(GetOrderStats())
        assert engine.query(GetOrderById("none")) is None


def test_each_reader_sees_its_own_write_under_concurrent_writes(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    per_thread = 40

    def reader_writer(engine: Engine, number: int) -> None:
        try:
            for step in range(per_thread):
                order_id = f"t{number}-{step}"
                result = engine.execute(create(order_id, f"Cust-{number}"), timeout=WAIT)
                view = engine.query(GetOrderById(order_id), after=result.position, timeout=WAIT)
                assert isinstance(view, OrderView), (order_id, result.position)
                added = engine.execute(
                    AddOrderItem(
                        order_id=order_id, product_id="sku-9", quantity=2, price=Decimal(3)
                    ),
                    timeout=WAIT,
                )
                page = engine.query(
                    GetCustomerOrders(f"Cust-{number}", page_size=1),
                    after=added.position,
                    timeout=WAIT,
                )
                assert page.total == step + 1
                assert page.items[0].order_id == order_id
                assert page.items[0].item_count == 3
                stats = engine.query(GetOrderStats(), after=added.position, timeout=WAIT)
                assert stats.total_orders >= step + 1
        except BaseException as error:
            errors.append(error)

    with Engine.open(tmp_path, durability="async", workers=2) as engine:
        threads = [
            threading.Thread(target=reader_writer, args=(engine, number)) for number in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        stats = engine.query(GetOrderStats(), after=engine.status().head)
        assert stats.total_orders == 6 * per_thread


def test_read_your_writes_through_query_async(tmp_path: Path) -> None:
    async def scenario(engine: Engine) -> list[Any]:
        seen = []
        for number in range(20):
            result = await engine.execute_async(create(f"a-{number}"))
            seen.append(
                await engine.query_async(GetOrderById(f"a-{number}"), after=result.position)
            )
        return seen

    with Engine.open(tmp_path, durability="async") as engine:
        assert all(view is not None for view in asyncio.run(scenario(engine)))


def test_a_position_far_ahead_times_out_with_the_answer_as_of_now(tmp_path: Path) -> None:
    model = OrderModel()
    with Engine.open(tmp_path, durability="async") as engine:
        result = run(engine, model, create("o-1"))
        assert result is not None
        with pytest.raises(ConsistencyTimeout) as caught:
            engine.query(GetOrderStats(), after=result.position + 1000, timeout=0.2)
        error = caught.value
        assert error.stale_result == model.answer(GetOrderStats())
        assert error.wanted == result.position + 1000
        assert error.reached == result.position
        assert error.view == "order_stats"

        async def ahead() -> Any:
            return await engine.query_async(GetOrderById("o-1"), after=10**6, timeout=0.1)

        with pytest.raises(ConsistencyTimeout) as caught_async:
            asyncio.run(ahead())
        assert caught_async.value.stale_result == model.answer(GetOrderById("o-1"))


def test_a_blocked_view_times_out_with_its_stale_answer_then_catches_up(tmp_path: Path) -> None:
    views = order_views(None)
    gated = GatedView(views[0])  # order_details
    with Engine.open(tmp_path, durability="async", views=[gated, *views[1:]]) as engine:
        first = engine.execute(create("o-1"))
        assert engine.wait_for_views(first.position, timeout=WAIT)
        gated.gate.clear()
        shipped = engine.execute(ShipOrder(order_id="o-1"))
        assert gated.entered.wait(WAIT)
        try:
            with pytest.raises(ConsistencyTimeout) as caught:
                engine.query(GetOrderById("o-1"), after=shipped.position, timeout=0.2)
            stale = caught.value.stale_result
            assert isinstance(stale, OrderView)
            assert stale.status == "pending"  # as of before the blocked event
            assert caught.value.reached == first.position
            # Another view is not held up by the blocked one.
            page = engine.query(SearchOrders(), after=shipped.position, timeout=WAIT)
            assert page.items[0].status == "shipped"
        finally:
            gated.gate.set()
        view = engine.query(GetOrderById("o-1"), after=shipped.position, timeout=WAIT)
        assert view.status == "shipped"


def test_asks_parked_for_many_positions_are_all_woken_in_any_order(tmp_path: Path) -> None:
    # Router race: asks parked at different positions, some cancelled by their caller's timeout,
    # and ViewAdvanced reports that jump over several positions at once (the view was blocked).
    views = order_views(None)
    gated = GatedView(views[0])
    with Engine.open(tmp_path, durability="async", views=[gated, *views[1:]]) as engine:
        gated.gate.clear()
        results = [engine.execute(create(f"o-{n}")) for n in range(30)]
        assert gated.entered.wait(WAIT)
        answers: dict[int, Any] = {}
        timeouts: list[int] = []

        def ask(number: int, timeout: float) -> None:
            try:
                answers[number] = engine.query(
                    GetOrderById(f"o-{number}"), after=results[number].position, timeout=timeout
                )
            except ConsistencyTimeout:
                timeouts.append(number)

        short = [threading.Thread(target=ask, args=(n, 0.05)) for n in range(0, 30, 3)]
        long = [threading.Thread(target=ask, args=(n, WAIT)) for n in reversed(range(30)) if n % 3]
        for thread in short:
            thread.start()
        for thread in short:
            thread.join(WAIT)
        for thread in long:
            thread.start()
        try:
            assert wait_until(lambda: len(timeouts) == len(short))
        finally:
            gated.gate.set()
        for thread in long:
            thread.join(WAIT)
        assert sorted(timeouts) == list(range(0, 30, 3))
        assert sorted(answers) == [n for n in range(30) if n % 3]
        assert all(answers[n].order_id == f"o-{n}" for n in answers)
        # The cancelled asks were dropped: later asks are still answered at once.
        head = results[-1].position
        assert engine.query(GetOrderById("o-0"), after=head, timeout=WAIT) is not None


def test_asks_given_up_on_do_not_pile_up_in_the_router(tmp_path: Path) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        head = engine.execute(create("o-1")).position
        for _ in range(300):
            with pytest.raises(ConsistencyTimeout):
                engine.query(GetOrderStats(), after=head + 1000, timeout=0.001)
        router = engine._read._router._actor_weakref()
        assert router is not None
        # Every Cancel was told before the next query's ask: once the router drained its inbox
        # (an ask of any message answers after every earlier one) the heap holds at most a
        # sweep's worth of cancelled entries.
        engine._read._router.ask("barrier", timeout=WAIT)
        assert len(router._waiting["order_stats"]) <= 2 * 64
        assert router._asks == {}
