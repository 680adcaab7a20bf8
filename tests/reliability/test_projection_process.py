"""Projections in a process of their own (``Engine.open(projection="process")``), for real.

Real child processes, no mocks: the engine starts its projection process; a second process
reads the views environment through ``views.ViewReader``; the projection process is SIGKILLed
mid-projection and must come back without skipping or doubling an event. Every wait is on a
condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from projection_kit import POISON, CountEvents, PoisonCounter
from reliability_kit import (
    ADDRESS,
    Child,
    all_commands,
    check_log,
    check_views_match_rebuild,
    command_for,
    command_id,
    view_answers,
    write_orders,
)
from waiting import wait_until

from actors import Engine, ProjectionUnavailable
from domain.errors import InvalidView
from domain.orders import ORDERS, CreateOrder, OrderItem, OrderState
from store import Codec, EventStore
from views import ViewReader
from views._snapshot_file import snapshot_path
from views.orders import GetOrderById, GetOrderStats, SearchOrders, order_read_models

ALL_LMDB: Any = dict.fromkeys(
    ("order_details", "customer_orders", "order_search", "order_stats"), "lmdb"
)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def state_of(engine: Engine, order_id: str) -> OrderState:
    """Fold the order's own stream through the pure decider (no view involved)."""
    state = ORDERS.initial()
    for record in engine.store.read_stream(order_id, stream_type="order"):
        state = ORDERS.evolve(state, record.event)
    return state


def run_all(engine: Engine, commands: Iterator[Any]) -> int:
    """Submit every command, wait for every result; return the last position."""
    futures = [engine.submit(command) for command in commands]
    return max(future.get(timeout=30).position for future in futures)


def test_process_mode_answers_the_order_queries_exactly_as_in_process_mode(
    tmp_path: Path,
) -> None:
    answers = []
    for mode in ("in-process", "process"):
        with Engine.open(tmp_path / mode, projection=mode, clock=lambda: NOW) as engine:
            head = run_all(engine, all_commands("same", 40))
            assert engine.wait_for_views(head, timeout=30)
            model = check_log(engine.store)
            customers = sorted({state.customer_id for state in model.states.values()})
            answers.append(view_answers(engine, customers, sorted(model.states)))
            if mode == "process":
                status = engine.status()
                assert status.projection is not None
                assert status.projection.state == "running"
                assert set(status.projection.views) == {
                    "order_details",
                    "customer_orders",
                    "order_search",
                    "order_stats",
                }
                assert status.views["order_details"].position == head
    assert answers[0] == answers[1]
    assert answers[0][0].total_orders == 40


def test_the_projection_process_projects_compressed_log_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's process trains the dictionary (early here); the child only reads the log.
    monkeypatch.setattr("store._training.FIRST_TRAINING", 60)
    with Engine.open(tmp_path / "data", projection="process", view_backends=ALL_LMDB) as engine:
        run_all(engine, all_commands("plain", 20))
        wait_until(lambda: engine.status().log_dictionary == 1)
        head = run_all(engine, all_commands("packed", 20))
        assert engine.wait_for_views(head, timeout=30)
        assert engine.status().projection is not None
        check_views_match_rebuild(engine, check_log(engine.store))


def test_read_your_writes_holds_in_process_mode(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "data", projection="process", view_backends=ALL_LMDB) as engine:
        for command in all_commands("ryw", 12):
            result = engine.execute(command)
            seen = engine.query(GetOrderById(result.aggregate_id), after=result.position)
            assert seen is not None
            state = state_of(engine, result.aggregate_id)
            assert (seen.status, seen.item_count) == (
                state.status,
                sum(item.quantity for item in state.items),
            )
            stats = engine.query(GetOrderStats(), after=result.position, timeout=5)
            assert stats.total_orders == int(result.aggregate_id.rsplit("o", 1)[1]) + 1


def test_a_second_process_answers_queries_from_the_views_while_the_engine_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    with Engine.open(path, projection="process", view_backends=ALL_LMDB) as engine:
        stop = threading.Event()

        def background() -> None:  # other writes go on the whole time
            order = 0
            while not stop.is_set():
                engine.execute(command_for(command_id("bg", 1, order, 0)))
                order += 1

        writer = threading.Thread(target=background, daemon=True)
        writer.start()
        try:
            with Child("viewreader", str(path)) as reader:
                reader.expect("READY")
                for order in range(8):
                    for step in range(5):
                        cid = command_id("rd", 0, order, step)
                        result = engine.execute(command_for(cid))
                        reader.send(f"get {result.aggregate_id} {result.position}")
                        status, items, _ = reader.expect("ORDER")
                        state = state_of(engine, result.aggregate_id)
                        assert status == state.status
                        assert int(items) == sum(item.quantity for item in state.items)
                reader.send(f"stats {engine.store.head()}")
                (total,) = reader.expect("STATS")
                assert int(total) >= 8
                reader.send("exit")
                assert reader.wait() == 0
        finally:
            stop.set()
            writer.join(timeout=30)


@pytest.mark.parametrize("backends", [ALL_LMDB, None], ids=["all-lmdb", "default-backends"])
def test_kill_minus_nine_of_the_projection_process_skips_and_doubles_nothing(
    tmp_path: Path, backends: Any
) -> None:
    # Default backends: the memory views die with the child and the next one replays them.
    with Engine.open(tmp_path / "data", projection="process", view_backends=backends) as engine:
        killed_behind = 0
        for round_no in range(3):
            futures = [engine.submit(c) for c in all_commands(f"k{round_no}", 150)]
            futures[-1].get(timeout=30)
            status = engine.status()
            assert status.projection is not None
            pid = status.projection.pid
            if status.views["order_stats"].position < status.head:
                killed_behind += 1
            os.kill(pid, signal.SIGKILL)
            for future in futures:
                future.get(timeout=30)

            def restarted(round_no: int = round_no) -> bool:
                projection = engine.status().projection
                assert projection is not None
                return projection.restarts == round_no + 1 and projection.state == "running"

            wait_until(restarted)
            projection = engine.status().projection
            assert projection is not None
            assert projection.pid != pid
            assert projection.last_exit_code == -signal.SIGKILL
            assert engine.wait_for_views(timeout=60)
            model = check_log(engine.store)
            assert engine.query(GetOrderStats()) == model.stats()
            for order_id, state in model.states.items():
                seen = engine.query(GetOrderById(order_id))
                assert seen is not None
                assert (seen.status, seen.item_count) == (
                    state.status,
                    sum(item.quantity for item in state.items),
                )
        assert killed_behind >= 1, "never killed while the views were behind"
        check_views_match_rebuild(engine, check_log(engine.store))


def test_poison_events_of_a_process_view_are_parked_in_the_log_and_can_be_retried(
    tmp_path: Path,
) -> None:
    views = [*order_read_models(), PoisonCounter()]
    with Engine.open(tmp_path / "data", projection="process", views=views) as engine:
        engine.execute(command_for(command_id("ok", 0, 0, 0)))
        bad = engine.execute(
            CreateOrder(
                order_id=f"x-{POISON}",
                customer_id="c",
                items=[OrderItem(product_id="p", quantity=1, price=Decimal(1))],
                shipping_address=ADDRESS,
            )
        )
        assert engine.query(CountEvents(), after=bad.position) == 1
        parked = engine.parked("poison_counter")
        assert [event.position for event in parked] == [bad.position]
        assert engine.status().views["poison_counter"].parked == 1
        assert engine.retry_parked("poison_counter", bad.position) is False  # still poison
        assert engine.discard_parked("poison_counter", bad.position)
        assert engine.status().parked_events == 0


def test_a_frozen_projection_process_shows_in_status_and_close_stops_it(
    tmp_path: Path,
) -> None:
    engine = Engine.open(tmp_path / "data", projection="process")
    status = engine.status().projection
    assert status is not None
    pid = status.pid
    engine.execute(command_for(command_id("c", 0, 0, 0)))
    os.kill(pid, signal.SIGSTOP)  # frozen: its status call times out; then killed, it restarts
    try:
        view = engine.status().views["order_details"]
        assert view.state == "retrying"
        assert view.error.startswith("ProjectionUnavailable")
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: engine.status().projection.restarts == 1)  # type: ignore[union-attr]
    with pytest.raises(ProjectionUnavailable):
        engine._read.remote._call("nothing", timeout=0.01)  # type: ignore[union-attr]
    engine.close()
    final = engine._read.remote
    assert final is not None
    assert final.status().state == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_view_reader_refuses_this_process_engine_and_memory_views(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Engine.open(path, projection="process") as engine:
        result = engine.execute(command_for(command_id("v", 0, 0, 0)))
        with pytest.raises(Exception, match="in use by process"):
            ViewReader.open(path)
    with ViewReader.open(path) as reader:
        assert reader.positions()["order_details"] == result.position
        assert reader.query(GetOrderById(result.aggregate_id), after=result.position) is not None
        with pytest.raises(Exception, match="GetOrderStats"):
            reader.query(GetOrderStats())


def test_a_read_model_the_projection_process_cannot_import_is_refused_at_open(
    tmp_path: Path,
) -> None:
    class Local(PoisonCounter):  # defined in a function: the other process cannot import it
        name = "local_counter"

    path = tmp_path / "data"
    with pytest.raises(InvalidView, match="cannot be sent to the projection process"):
        Engine.open(path, projection="process", views=[*order_read_models(), Local()])
    with Engine.open(path, projection="process") as engine:  # nothing was left open
        assert engine.status().projection is not None


def test_a_codec_the_projection_process_cannot_import_is_refused_at_open(tmp_path: Path) -> None:
    class LocalHappened(msgspec.Struct, frozen=True, tag="LocalHappened"):  # in a function
        note: str

    codec = Codec(ORDERS.event_types)
    codec.register(LocalHappened)
    path = tmp_path / "data"
    with pytest.raises(InvalidView, match="cannot be decoded in the projection process"):
        Engine.open(path, projection="process", codec=codec)
    with Engine.open(path, projection="process") as engine:  # nothing was left open
        assert engine.status().projection is not None


def test_a_rebuild_reports_the_projection_process_progress_as_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async") as store:
        head = write_orders(store, "big", 1500)  # several batches of 2,000 events
    seen: list[tuple[int, int]] = []
    with Engine.open(path, projection="process") as engine:
        assert engine.wait_for_views(timeout=120)
        report = engine.rebuild(progress=lambda done, total: seen.append((done, total)))
        assert report.events == head
    fractions = [done / total for done, total in seen]
    # Every default view is projected there: the child's scan reports per batch, relayed.
    assert any(0 < fraction < 0.5 for fraction in fractions), seen  # from the child, per batch
    assert any(0.5 < fraction < 1 for fraction in fractions), seen
    assert fractions == sorted(fractions)
    assert seen[-1] == (head, head)


def test_the_log_map_grown_by_the_engine_is_adopted_by_the_projection_process(
    tmp_path: Path,
) -> None:
    # A 256 KiB map: the engine grows the log's map several times under the following child.
    path = tmp_path / "data"
    with Engine.open(
        path, projection="process", view_backends=ALL_LMDB, map_size=256 * 1024
    ) as engine:
        head = run_all(engine, all_commands("grow", 400))
        assert engine.wait_for_views(head, timeout=60)
        assert engine.store.map_size > 256 * 1024
        model = check_log(engine.store)
        assert engine.query(GetOrderStats(), after=head) == model.stats()
        projection = engine.status().projection
        assert projection is not None
        assert projection.restarts == 0


def test_memory_views_live_in_the_projection_process_and_snapshot_there(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Engine.open(path, projection="process") as engine:
        head = run_all(engine, all_commands("mem", 30))
        # Read-your-writes through the pipe: the child's reported position wakes the query.
        stats = engine.query(GetOrderStats(), after=head, timeout=10)
        assert stats == check_log(engine.store).stats()
        found = engine.query(SearchOrders(query="mem", page_size=100), after=head, timeout=10)
        assert found.total == 30
        status = engine.status()
        assert status.views["order_search"].backend == "memory"
        assert status.views["order_stats"].position == head
        assert status.projection is not None
        child = status.projection.pid
    # The child snapshotted its memory views as it stopped; an in-process engine loads them.
    directory = path / "views" / "snapshots"
    assert snapshot_path(directory, "order_search").exists()
    assert snapshot_path(directory, "order_stats").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    with Engine.open(path) as engine:
        assert engine.status().views["order_search"].position == head  # loaded, not replayed
        assert engine.query(GetOrderStats()) == stats


def test_after_a_restart_the_memory_views_never_answer_older_than_before(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async") as store:
        head = write_orders(store, "floor", 1500)  # the new child replays them all: ~0.3 s
    with Engine.open(path, projection="process") as engine:
        before = engine.query(GetOrderStats(), after=head, timeout=60)
        status = engine.status().projection
        assert status is not None
        os.kill(status.pid, signal.SIGKILL)
        answers: list[Any] = []

        def answered() -> bool:
            try:
                answers.append(engine.query(GetOrderStats()))
            except ProjectionUnavailable:
                return False  # down, or still catching up to what was answered before
            return engine.status().projection.restarts == 1  # type: ignore[union-attr]

        wait_until(answered, timeout=60)
        # Every answer, including any the old child gave before it died, is the whole log's.
        assert answers
        assert all(answer == before for answer in answers)


def test_a_memory_read_model_the_projection_process_cannot_import_stays_here(
    tmp_path: Path,
) -> None:
    class LocalMemory(PoisonCounter):  # defined in a function: the other process cannot import it
        name = "local_memory_counter"
        default_backend = "memory"

    with Engine.open(
        tmp_path / "data", projection="process", views=[*order_read_models(), LocalMemory()]
    ) as engine:
        result = engine.execute(command_for(command_id("here", 0, 0, 0)))
        assert engine.query(CountEvents(), after=result.position, timeout=10) == 1
        status = engine.status()
        assert status.projection is not None
        assert "local_memory_counter" not in status.projection.views
        assert "order_stats" in status.projection.views
