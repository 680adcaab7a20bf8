"""The write-side contract end to end through the Engine facade (real LMDB, real actors)."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_kit import (
    ADDRESS,
    COUNTER,
    TIMEOUT,
    Increment,
    Reset,
    add,
    all_events,
    assert_log_contiguous,
    cancel,
    create,
    open_engine,
    remove,
    replay,
    ship,
)
from structlog.testing import capture_logs

from actors import (
    AggregateNotFound,
    CommandRejected,
    CommandResult,
    ConcurrencyConflict,
    Engine,
    EngineClosed,
    IdempotencyConflict,
    InvalidCommand,
    LogLocked,
    UnknownView,
)
from domain.orders import ORDERS, CreateOrder, OrderCreated, OrderItem
from views.orders import GetOrderById


def test_versions_and_positions_advance_by_one_per_command_without_gaps(tmp_path: Path) -> None:
    with open_engine(tmp_path) as engine:
        results = [
            engine.execute(create("a")),
            engine.execute(create("b")),
            engine.execute(add("a", "pear")),
            engine.execute(add("b", "plum")),
            engine.execute(remove("a", "apple")),
            engine.execute(ship("a")),
            engine.execute(cancel("b")),
        ]
        assert [r.position for r in results] == [1, 2, 3, 4, 5, 6, 7]
        assert [(r.aggregate_id, r.version) for r in results] == [
            ("a", 1),
            ("b", 1),
            ("a", 2),
            ("b", 2),
            ("a", 3),
            ("a", 4),
            ("b", 3),
        ]
        assert all(len(r.events) == 1 for r in results)
        streams = assert_log_contiguous(engine.store)
        assert replay(ORDERS, streams["a"]).status == "shipped"
        assert replay(ORDERS, streams["b"]).status == "cancelled"
        assert engine.status().head == 7


def test_the_default_views_answer_what_the_write_side_committed(tmp_path: Path) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        created = engine.execute(create("o-1", price="4.00"))
        added = engine.execute(add("o-1", "pear", 3))
        view = engine.query(GetOrderById(order_id="o-1"), after=added.position, timeout=TIMEOUT)
        assert view is not None
        assert view.total_amount == Decimal("7.00")
        assert view.item_count == 4
        assert created.position < added.position
        assert engine.wait_for_views(timeout=TIMEOUT)
        assert all(v.position == added.position for v in engine.status().views.values())


@pytest.mark.parametrize(
    ("command", "error"),
    [
        pytest.param(add("missing"), AggregateNotFound, id="unknown-order"),
        pytest.param(ship("missing"), AggregateNotFound, id="ship-unknown-order"),
        pytest.param(
            CreateOrder(customer_id="c", items=[], shipping_address=ADDRESS, order_id="n"),
            CommandRejected,
            id="no-items",
        ),
        pytest.param(create("o", customer_id=""), CommandRejected, id="empty-customer"),
        pytest.param(create("o", price="-1"), CommandRejected, id="negative-price"),
        pytest.param(create("o"), CommandRejected, id="order-id-used"),
        pytest.param(add("o", "apple", 0), CommandRejected, id="quantity-zero"),
        pytest.param(remove("o", "apple"), CommandRejected, id="last-item"),
        pytest.param(remove("o", "kiwi"), CommandRejected, id="item-not-in-order"),
        pytest.param(cancel("o", reason=" "), CommandRejected, id="empty-reason"),
        pytest.param(add("shipped", "pear"), CommandRejected, id="not-pending"),
        pytest.param(ship("shipped"), CommandRejected, id="ship-twice"),
    ],
)
def test_a_rejected_command_raises_its_error_and_writes_nothing(
    tmp_path: Path, command: Any, error: type[Exception]
) -> None:
    with open_engine(tmp_path) as engine:
        engine.execute(create("o"))
        engine.execute(create("shipped"))
        engine.execute(ship("shipped"))
        head = engine.store.head()
        with pytest.raises(error):
            engine.execute(command)
        assert engine.store.head() == head
        assert engine.store.lookup_command(command.command_id) is None
        # the aggregate is unharmed: its next command gets the next version
        assert engine.execute(add("o", "pear")).version == 2


def test_expected_version_zero_means_must_not_exist_yet(tmp_path: Path) -> None:
    with open_engine(tmp_path) as engine:
        assert engine.execute(create("o", expected_version=0)).version == 1
        with pytest.raises(ConcurrencyConflict) as caught:
            engine.execute(add("o", expected_version=0))
        assert (caught.value.expected, caught.value.actual) == (0, 1)
        assert engine.store.head() == 1


def test_an_expected_version_mismatch_raises_a_conflict_with_both_versions(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path) as engine:
        engine.execute(create("o"))
        engine.execute(add("o", "pear"))
        with pytest.raises(ConcurrencyConflict) as caught:
            engine.execute(add("o", "plum", expected_version=1))
        assert caught.value.expected == 1
        assert caught.value.actual == 2
        assert isinstance(caught.value.actual, int)
        assert engine.store.head() == 2
        assert engine.execute(add("o", "plum", expected_version=2)).version == 3


def test_the_same_command_id_returns_the_original_result_and_appends_nothing(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path) as engine:
        original = engine.execute(create("o", command_id="cmd-1"))
        engine.execute(add("o", "pear"))
        again = engine.execute(create("o", command_id="cmd-1"))
        assert again == original
        assert engine.store.head() == 2
    with open_engine(tmp_path) as engine:  # also after a restart
        assert engine.execute(create("o", command_id="cmd-1")) == original
        assert engine.store.head() == 2


def test_the_same_command_id_with_a_different_command_is_an_idempotency_conflict(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path) as engine:
        engine.execute(create("o", command_id="cmd-1"))
        with pytest.raises(IdempotencyConflict) as caught:
            engine.execute(add("o", "pear", command_id="cmd-1"))
        assert caught.value.command_id == "cmd-1"
        # the same id on another aggregate is a different command too
        with pytest.raises(IdempotencyConflict):
            engine.execute(create("other", command_id="cmd-1"))
        assert engine.store.head() == 1
    with open_engine(tmp_path) as engine:
        with pytest.raises(IdempotencyConflict):
            engine.execute(ship("o", command_id="cmd-1"))
        assert engine.store.head() == 1


class NotACommand:
    command_id = "x"
    expected_version = None
    order_id = "o"


def _any(value: object) -> Any:
    """Let a test put a value of the wrong type into a command (the door must refuse it)."""
    return value


def _huge_item() -> CreateOrder:
    item = OrderItem(product_id="apple", quantity=10**100, price=Decimal(1))
    return CreateOrder(customer_id="c", items=[item], shipping_address=ADDRESS, order_id="h")


BAD_INPUT: list[Any] = [
    pytest.param(NotACommand(), id="unknown-type"),
    pytest.param("CreateOrder", id="a-string"),
    pytest.param(None, id="none"),
    pytest.param(Increment(counter_id="c"), id="command-of-an-unregistered-aggregate"),
    pytest.param(create(""), id="empty-order-id"),
    pytest.param(create("o", command_id=""), id="empty-command-id"),
    pytest.param(create("o", command_id=42), id="int-command-id"),
    pytest.param(create(42), id="int-order-id"),
    pytest.param(create("x" * 100_000), id="huge-order-id"),
    pytest.param(create("a\x00b"), id="nul-in-order-id"),
    pytest.param(create("o", expected_version=-1), id="negative-expected-version"),
    pytest.param(create("o", expected_version="1"), id="str-expected-version"),
    pytest.param(create("o", expected_version=True), id="bool-expected-version"),
    pytest.param(create("o", customer_id=None), id="none-customer"),
    pytest.param(create("o", customer_id="c" * 100_000), id="huge-customer"),
    pytest.param(_huge_item(), id="huge-quantity"),
    pytest.param(add("o", quantity="3"), id="str-quantity"),
    pytest.param(add("o", quantity=2.5), id="float-quantity"),
    pytest.param(add("o", price=Decimal("NaN")), id="nan-price"),
    pytest.param(add("o", price=0.1), id="float-price"),
    pytest.param(add("o", price=Decimal("1e400")), id="huge-price"),
    pytest.param(add("o", product_id=""), id="empty-product"),
    pytest.param(add("o", product_id=7), id="int-product"),
    pytest.param(cancel("o", reason="r" * 1_000_000), id="huge-reason"),
    pytest.param(
        CreateOrder(customer_id="c", items=_any("apple"), shipping_address=ADDRESS, order_id="s"),
        id="items-not-a-list",
    ),
    pytest.param(
        CreateOrder(customer_id="c", items=_any(["apple"]), shipping_address=ADDRESS, order_id="s"),
        id="item-not-an-orderitem",
    ),
    pytest.param(
        CreateOrder(
            customer_id="c",
            items=[OrderItem(product_id="p", quantity=1, price=Decimal(1))] * 10_000,
            shipping_address=ADDRESS,
            order_id="many",
        ),
        id="too-many-items",
    ),
    pytest.param(
        CreateOrder(
            customer_id="c",
            items=[OrderItem(product_id="p", quantity=1, price=Decimal(1))],
            shipping_address=_any("home"),
            order_id="s",
        ),
        id="address-not-an-address",
    ),
]


@pytest.mark.parametrize("command", BAD_INPUT)
def test_bad_input_at_the_python_door_is_refused_and_the_log_is_unchanged(
    tmp_path: Path, command: Any
) -> None:
    with open_engine(tmp_path) as engine:
        engine.execute(create("o"))
        head = engine.store.head()
        with pytest.raises(CommandRejected):  # InvalidCommand derives from it
            engine.execute(command)
        assert engine.store.head() == head
        # and the engine is fine afterwards
        assert engine.execute(add("o", "pear")).version == 2


def test_unknown_command_types_are_invalid_commands(tmp_path: Path) -> None:
    with open_engine(tmp_path) as engine:
        for command in (NotACommand(), "CreateOrder", None, Increment(counter_id="c")):
            with pytest.raises(InvalidCommand):
                engine.submit(command)
        assert engine.status().in_flight == 0


def test_a_second_aggregate_type_runs_beside_orders(tmp_path: Path) -> None:
    with open_engine(tmp_path, deciders=[ORDERS, COUNTER]) as engine:
        first = engine.execute(Increment(counter_id="c", by=2))
        order = engine.execute(create("o"))
        second = engine.execute(Increment(counter_id="c", by=3))
        assert (first.version, first.position) == (1, 1)
        assert (order.version, order.position) == (1, 2)
        assert (second.version, second.position) == (2, 3)
        streams = assert_log_contiguous(engine.store)
        assert replay(COUNTER, streams["c"]).value == 5
        assert {e.stream_type for e in all_events(engine.store)} == {"counter", "order"}
        assert isinstance(streams["o"][0].event, OrderCreated)


def test_execute_async_lets_other_coroutines_run_while_it_waits(tmp_path: Path) -> None:
    async def scenario(engine: Engine) -> tuple[list[CommandResult], int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        results = [await engine.execute_async(create(f"o{i}")) for i in range(20)]
        results += await asyncio.gather(*(engine.execute_async(add(f"o{i}")) for i in range(20)))
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        return results, ticks

    # sync durability: every await spans an fsync, time the loop must spend on the ticker
    with open_engine(tmp_path, durability="sync") as engine:
        results, ticks = asyncio.run(scenario(engine))
        assert ticks >= 20
        assert sorted(r.position for r in results) == list(range(1, 41))
        with pytest.raises(AggregateNotFound):
            asyncio.run(engine.execute_async(ship("missing")))


def test_close_drains_in_flight_commands_and_every_acknowledged_one_is_in_the_log(
    tmp_path: Path,
) -> None:
    engine = Engine.open(tmp_path, views=[], durability="async")
    futures = [
        engine.submit(create(f"o{i % 50}") if i < 50 else add(f"o{i % 50}")) for i in range(2000)
    ]
    engine.close()
    acknowledged = [f.get(timeout=0) for f in futures]  # all resolved by close
    assert len(acknowledged) == 2000
    with open_engine(tmp_path) as reopened:
        store = reopened.store
        assert store.head() == 2000
        for result in acknowledged:
            events = store.read_stream(result.aggregate_id, result.version, stream_type="order")
            assert events[0].position == result.position
            assert events[0].event == result.events[0]
        assert_log_contiguous(store)


def test_every_call_after_close_raises_engine_closed(tmp_path: Path) -> None:
    engine = Engine.open(tmp_path, views=[], durability="async")
    engine.execute(create("o"))
    engine.close()
    engine.close()  # idempotent
    assert engine.closed
    with pytest.raises(EngineClosed):
        engine.execute(add("o"))
    with pytest.raises(EngineClosed):
        engine.submit(add("o"))
    with pytest.raises(EngineClosed):
        asyncio.run(engine.execute_async(add("o")))
    with pytest.raises(EngineClosed):
        engine.query(GetOrderById(order_id="o"))
    with pytest.raises(EngineClosed):
        engine.status()
    with pytest.raises(EngineClosed):
        engine.wait_for_views()
    with pytest.raises(EngineClosed):
        engine.retry_view("order_details")


def test_retry_view_names_a_view_and_leaves_a_healthy_one_as_it_is(tmp_path: Path) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        created = engine.execute(create("o"))
        assert engine.wait_for_views(created.position, timeout=TIMEOUT)
        names = list(engine.status().views)
        for name in names:
            engine.retry_view(name)  # nothing to restart: it stays where it is, healthy
        with pytest.raises(UnknownView) as caught:
            engine.retry_view("nope")
        assert sorted(caught.value.known) == sorted(names)
        later = engine.execute(add("o"))
        assert engine.wait_for_views(later.position, timeout=TIMEOUT)
        for view in engine.status().views.values():
            assert (view.state, view.error, view.attempts) == ("ok", "", 0)
            assert view.position == later.position


def test_a_second_engine_on_the_same_path_raises_log_locked_naming_this_process(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path) as engine:
        with pytest.raises(LogLocked) as caught:
            Engine.open(tmp_path, views=[])
        assert caught.value.pid == os.getpid()
        assert str(os.getpid()) in str(caught.value)
        engine.execute(create("o"))  # the first one is unharmed
    with open_engine(tmp_path) as engine:  # released on close
        assert engine.store.head() == 1


def test_logs_at_most_one_commit_line_per_batch_and_no_info_line_per_command(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path) as engine:
        with capture_logs() as logs:
            futures = [engine.submit(create(f"o{i}")) for i in range(500)]
            for future in futures:
                future.get(timeout=TIMEOUT)
            engine.execute(add("o1"))
            with pytest.raises(AggregateNotFound):
                engine.execute(add("missing"))
        writer = engine._writer.proxy()
        batches = writer.batches.get(timeout=TIMEOUT)
        commands = writer.commands.get(timeout=TIMEOUT)
    commits = [entry for entry in logs if entry["event"] == "commit"]
    assert all(entry["log_level"] == "debug" for entry in commits)  # a library is quiet
    assert len(commits) == batches
    assert sum(entry["commands"] for entry in commits) == commands == 501
    info = [entry for entry in logs if entry["log_level"] in {"info", "warning", "error"}]
    assert info == []


def test_a_retry_of_a_command_that_appended_no_events_returns_its_original_result(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path, deciders=[COUNTER]) as engine:
        engine.execute(Increment(counter_id="a"))
        engine.execute(Reset(counter_id="a"))
        nothing = Reset(counter_id="a")  # the counter is zero: no event
        first = engine.execute(nothing)
        assert (first.version, first.position, first.events) == (2, 0, ())
        assert engine.execute(nothing) == first
        assert engine.store.head() == 2
