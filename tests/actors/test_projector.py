"""Projector actors through the engine: lag, poison parking, unknown events, restarts, stops,
and views whose storage fails retried with capped backoff."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Literal

import msgspec
import pytest
from readside_kit import (
    WAIT,
    FlakyView,
    GatedView,
    OrderModel,
    PoisonModel,
    StepClock,
    WrappedView,
    assert_answers,
    create,
    poisoned_views,
    random_steps,
    run,
    run_steps,
)
from structlog.testing import capture_logs
from waiting import wait_until

import actors._projector
from actors import Engine
from actors._backoff import Backoff
from domain.errors import ConsistencyTimeout, UnknownView
from domain.orders import ORDERS, AddOrderItem, CancelOrder, ShipOrder
from store import Codec, EventStore, RecordedEvent, StreamAppend, ViewStore
from views.orders import (
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderStats,
    SearchOrders,
    order_views,
)


class Mystery(msgspec.Struct, frozen=True, kw_only=True, tag="Mystery"):
    """An event type the engine's codec does not know."""

    note: str


def test_a_blocked_view_never_slows_the_write_side_and_shows_its_lag(tmp_path: Path) -> None:
    views = order_views(None)
    gated = GatedView(views[3])  # order_stats
    with Engine.open(tmp_path, durability="async", views=[*views[:3], gated]) as engine:
        gated.gate.clear()
        first = engine.execute(create("o-0"))
        assert gated.entered.wait(WAIT)
        try:
            # The stats projector is stuck inside apply: commands still execute and return.
            results = [engine.execute(create(f"o-{n}"), timeout=WAIT) for n in range(1, 60)]
            head = results[-1].position
            assert engine.query(SearchOrders(page_size=1000), after=head).total == 60
            assert wait_until(lambda: engine.status().views["order_stats"].lag_seconds > 0)
            others = ("order_details", "customer_orders", "order_search")
            # The query above waited for order_search only: wait for the other free views too.
            assert wait_until(lambda: all(engine.status().views[n].lag_events == 0 for n in others))
            status = engine.status()
            stats = status.views["order_stats"]
            assert stats.position == first.position - 1
            assert stats.lag_events == head - stats.position
            for name in others:
                assert status.views[name].lag_events == 0
                assert status.views[name].lag_seconds == 0
        finally:
            gated.gate.set()
        assert engine.wait_for_views(head, timeout=WAIT)
        stats = engine.status().views["order_stats"]
        assert (stats.lag_events, stats.lag_seconds) == (0, 0)
        assert engine.query(GetOrderStats()).total_orders == 60


def test_views_replaying_at_open_report_lag_in_seconds(tmp_path: Path) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        for number in range(20):
            engine.submit(create(f"o-{number}"))
        assert engine.wait_for_views(20, timeout=WAIT)
    views = order_views(None)
    gated = GatedView(views[2])  # order_search, in memory: replays from 0 at open
    gated.gate.clear()
    with Engine.open(tmp_path, views=[*views[:2], gated, views[3]]) as engine:
        try:
            assert gated.entered.wait(WAIT)
            assert wait_until(lambda: engine.status().views["order_search"].lag_seconds > 0)
            assert engine.status().views["order_search"].lag_events == 20
        finally:
            gated.gate.set()  # before close(): a blocked projector would hold it up
        assert engine.wait_for_views(timeout=WAIT)
        assert engine.status().views["order_search"].lag_seconds == 0


def poisoned_engine(path: Path, order_id: str) -> tuple[Engine, PoisonModel]:
    views, poison = poisoned_views("order_details", order_id)
    return Engine.open(path, durability="async", views=views), poison


def test_a_poison_event_is_parked_the_view_moves_on_and_a_retry_applies_it(
    tmp_path: Path,
) -> None:
    model = OrderModel()
    engine, poison = poisoned_engine(tmp_path, "o-bad")
    with engine, capture_logs() as logs:
        run(engine, model, create("o-1"))
        bad = run(engine, model, create("o-bad", "Cust-2", ("sku-3", 2, Decimal("2.25"))))
        assert bad is not None  # the write side is not affected
        run(engine, model, create("o-3"))
        run(engine, model, ShipOrder(order_id="o-1"))
        assert engine.wait_for_views(timeout=WAIT)
        status = engine.status()
        assert status.parked_events == 1
        assert status.views["order_details"].parked == 1
        assert status.views["order_search"].parked == 0
        (parked,) = engine.store.parked()
        assert engine.parked("order_details") == [parked]
        assert (parked.view, parked.position) == ("order_details", bad.position)
        assert "poison order o-bad" in parked.error
        assert parked.attempts >= 1
        assert any(e["event"] == "event_parked" and e["position"] == bad.position for e in logs)
        # The view moved on: later events were applied, only the poison one is missing.
        assert engine.query(GetOrderById("o-bad")) is None
        assert engine.query(GetOrderById("o-3")) == model.answer(GetOrderById("o-3"))
        assert engine.query(GetOrderById("o-1")) == model.answer(GetOrderById("o-1"))
        assert status.views["order_details"].position == status.head
        # The other views are unaffected.
        assert_answers(engine, model, [SearchOrders(), GetOrderStats()])

        assert engine.retry_parked("order_details", bad.position) is False  # still poison
        (again,) = engine.parked()
        assert again.attempts == parked.attempts + 1
        assert "poison order o-bad" in again.error
        poison.poisoned.clear()
        assert engine.retry_parked("order_details", bad.position) is True
        assert engine.parked() == []
        assert engine.status().parked_events == 0
        assert_answers(engine, model, model.probes())
        assert engine.retry_parked("order_details", bad.position) is False  # no longer parked
        with pytest.raises(UnknownView):
            engine.retry_parked("nope", bad.position)


def test_a_discarded_parked_event_is_forgotten_and_the_view_stays_without_it(
    tmp_path: Path,
) -> None:
    engine, _ = poisoned_engine(tmp_path, "o-bad")
    with engine:
        engine.execute(create("o-1"))
        bad = engine.execute(create("o-bad"))
        later = engine.execute(create("o-2"))
        assert engine.wait_for_views(later.position, timeout=WAIT)
        assert [p.position for p in engine.parked("order_details")] == [bad.position]
        assert engine.discard_parked("order_details", bad.position) is True
        assert engine.discard_parked("order_details", bad.position) is False
        assert engine.parked() == []
        assert engine.status().parked_events == 0
        assert engine.query(GetOrderById("o-bad")) is None
        assert engine.query(GetOrderById("o-2")) is not None


def test_every_event_of_a_poison_order_is_parked_and_retried_in_order(tmp_path: Path) -> None:
    model = OrderModel()
    engine, poison = poisoned_engine(tmp_path, "o-bad")
    with engine:
        run(engine, model, create("o-bad", "Cust-1", ("sku-1", 1, Decimal(5))))
        add = AddOrderItem(order_id="o-bad", product_id="sku-2", quantity=3, price=Decimal(1))
        run(engine, model, add)
        run(engine, model, create("o-ok"))
        run(engine, model, CancelOrder(order_id="o-bad", reason="oops"))
        assert engine.wait_for_views(timeout=WAIT)
        positions = [p.position for p in engine.parked("order_details")]
        assert positions == [1, 2, 4]
        poison.poisoned.clear()
        assert [engine.retry_parked("order_details", p) for p in positions] == [True] * 3
        assert engine.status().parked_events == 0
        assert_answers(engine, model, model.probes())


def test_views_resume_from_their_checkpoint_after_a_restart_without_double_counting(
    tmp_path: Path,
) -> None:
    model = OrderModel()
    clock = StepClock()
    with Engine.open(tmp_path, clock=clock) as engine:
        run_steps(engine, model, random_steps(seed=3, count=120))
        head = engine.status().head
        assert engine.wait_for_views(head, timeout=WAIT)
    with ViewStore.open(tmp_path / "views", head=head) as store:
        # The LMDB views committed their checkpoints with their rows, in their own environment.
        assert store.recovered == ""
        assert store.checkpoint("order_details") == head
        assert store.checkpoint("customer_orders") == head
    for _ in range(2):  # twice: the second restart resumes from the first one's checkpoints
        with Engine.open(tmp_path, clock=clock) as engine:
            status = engine.status()  # before any projector could have replayed anything
            for name in ("order_details", "customer_orders"):
                assert status.views[name].backend == "lmdb"
                assert status.views[name].position == head  # resumed, not replayed from 0
            run_steps(engine, model, random_steps(seed=4, count=30))
            head = engine.status().head
            assert engine.wait_for_views(head, timeout=WAIT)
            status = engine.status()
            assert status.parked_events == 0  # a replay over existing rows would park
            assert {s.position for s in status.views.values()} == {head}
            assert_answers(engine, model, model.probes())  # counts and revenue exact


def test_closing_while_views_catch_up_stops_cleanly_and_they_resume(tmp_path: Path) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        for number in range(1500):
            engine.submit(create(f"o-{number}", f"Cust-{number % 7}"))
        head = 1500
        assert engine.wait_for_views(head, timeout=WAIT)
    backends: dict[str, Literal["memory", "lmdb"]] = {
        "order_details": "memory",
        "order_search": "memory",
    }
    for _ in range(3):
        # Projector stop during catch-up: the memory views are replaying when close() comes.
        with Engine.open(tmp_path, view_backends=backends):
            pass
    with Engine.open(tmp_path) as engine:
        assert engine.wait_for_views(head, timeout=WAIT)
        stats = engine.query(GetOrderStats())
        assert stats.total_orders == 1500
        assert stats.top_products == [("sku-1", 1500)]
        assert engine.status().parked_events == 0


def write_mystery_event(path: Path) -> int:
    """Append an event the engine cannot decode, straight through the store; return its position."""
    codec = Codec([*ORDERS.event_types, Mystery])
    with EventStore.open(path, codec=codec) as store:
        (committed,) = store.append_batch(
            [
                StreamAppend(
                    stream_id="mystery-1",
                    stream_type="mystery",
                    expected_version=0,
                    events=[Mystery(note="from a newer version")],
                )
            ]
        )
        assert not isinstance(committed, Exception)
        return committed.last_position


def test_an_unknown_event_stalls_views_loudly_unless_they_skip_it(tmp_path: Path) -> None:
    model = OrderModel()
    with Engine.open(tmp_path) as engine:
        run(engine, model, create("o-1"))
        run(engine, model, create("o-2"))
    bad = write_mystery_event(tmp_path)
    with Engine.open(tmp_path) as engine:
        after = run(engine, model, create("o-3"))  # the write side does not read that stream
        assert after is not None
        assert wait_until(lambda: all(s.error for s in engine.status().views.values()))
        for stalled in engine.status().views.values():
            assert "CorruptLog" in stalled.error
            assert f"position {bad}" in stalled.error
            assert stalled.position == bad - 1
            assert stalled.skipped == 0
        with pytest.raises(ConsistencyTimeout) as caught:
            engine.query(GetOrderById("o-3"), after=after.position, timeout=0.1)
        assert caught.value.stale_result is None
        assert engine.query(GetOrderById("o-1")) is not None
    with Engine.open(tmp_path, skip_unknown_events=True) as engine:
        run(engine, model, ShipOrder(order_id="o-1"))
        head = engine.status().head
        assert engine.wait_for_views(head, timeout=WAIT)
        for view in engine.status().views.values():
            assert view.error == ""
            assert view.skipped == 1
            assert view.position == head
        assert engine.status().parked_events == 0
        assert_answers(engine, model, model.probes())
    with Engine.open(tmp_path, skip_unknown_events=True) as engine:
        assert engine.wait_for_views(timeout=WAIT)
        status = engine.status()
        # The LMDB views are past it for good, the memory views too: their snapshots were
        # taken at close.
        assert status.views["order_details"].skipped == 0
        assert status.views["order_search"].skipped == 0
        assert_answers(engine, model, model.probes())
    shutil.rmtree(tmp_path / "views" / "snapshots")
    with Engine.open(tmp_path, skip_unknown_events=True) as engine:
        assert engine.wait_for_views(timeout=WAIT)
        # Without snapshots the memory views replay from 0 and skip it again.
        assert engine.status().views["order_search"].skipped == 1
        assert_answers(engine, model, model.probes())


def test_a_projector_keeps_up_while_commands_arrive_from_threads(tmp_path: Path) -> None:
    model = OrderModel()
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            for step in range(40):
                run(engine, model, create(f"w{number}-{step}", f"Cust-{number}"))
        except BaseException as error:
            errors.append(error)

    with Engine.open(tmp_path, durability="async", workers=2) as engine:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert_answers(engine, model, model.probes())


def test_a_projector_stopped_in_the_middle_of_its_catch_up_resumes_exactly(tmp_path: Path) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        for number in range(300):
            engine.submit(create(f"o-{number}", "Cust-1", ("sku-2", 2, Decimal("1.25"))))
        engine.execute(ShipOrder(order_id="o-7"))
        assert engine.wait_for_views(timeout=WAIT)
    views = order_views(None)
    gated = GatedView(views[3])  # order_stats, in memory: replays from 0 at open
    gated.gate.clear()
    engine = Engine.open(tmp_path, views=[*views[:3], gated])
    closer = threading.Thread(target=engine.close)
    try:
        assert gated.entered.wait(WAIT)  # stuck inside its first catch-up batch
        projector = engine._read._projectors["order_stats"]
        closer.start()
        # The stop request is queued behind the batch in progress.
        assert wait_until(lambda: not projector.actor_inbox.empty())
    finally:
        gated.gate.set()
        closer.join(WAIT)
    assert not closer.is_alive()
    assert engine.closed
    with Engine.open(tmp_path) as engine:
        assert engine.wait_for_views(timeout=WAIT)
        stats = engine.query(GetOrderStats())
        assert stats.total_orders == 300
        assert stats.by_status == {"pending": 299, "shipped": 1, "cancelled": 0}
        assert stats.revenue == Decimal("2.50")
        assert stats.top_products == [("sku-2", 600)]


ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from decimal import Decimal
import structlog
from actors import Engine
from domain.orders import Address, CreateOrder, OrderItem, ShipOrder

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
address = Address(street="s", city="c", postal_code="p", country="x")
with Engine.open(sys.argv[1], durability="async") as engine:
    number = 0
    while True:
        futures = []
        for _ in range(20):
            item = OrderItem(product_id=f"sku-{number % 5}", quantity=2, price=Decimal("1.25"))
            futures.append(engine.submit(CreateOrder(
                order_id=f"k-{number}", customer_id=f"Cust-{number % 3}", items=[item],
                shipping_address=address)))
            number += 1
        for future in futures:
            result = future.get(timeout=10)
            print("ack", result.aggregate_id, result.position, flush=True)
        if number % 40 == 0:
            shipped = engine.execute(ShipOrder(order_id=f"k-{number - 1}"))
            print("ack", shipped.aggregate_id, shipped.position, flush=True)
        if number == 100:
            engine.wait_for_views(timeout=10)
            print("views", result.position, flush=True)
"""


def test_a_killed_engine_resumes_its_views_from_their_checkpoints_exactly(
    tmp_path: Path,
) -> None:
    child = subprocess.Popen(  # noqa: S603 - our own interpreter running our own test code
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its logs
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in child.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    acked: dict[str, int] = {}
    checkpointed = 0
    try:
        while len(acked) < 400:
            kind, *rest = lines.get(timeout=WAIT).split()
            if kind == "views":
                checkpointed = int(rest[0])
            else:
                acked[rest[0]] = int(rest[1])
    finally:
        os.kill(child.pid, signal.SIGKILL)  # mid-flight: commits and view writes under way
        child.wait(WAIT)
        reader.join(WAIT)
        if child.stdout is not None:
            child.stdout.close()
    assert checkpointed > 0
    queries = [
        GetOrderStats(),
        SearchOrders(page_size=1000, sort_by="total_amount"),
        *(GetCustomerOrders(f"Cust-{n}", page_size=1000) for n in range(3)),
    ]
    with Engine.open(tmp_path) as engine:
        status = engine.status()  # before any projector could have replayed anything
        head = status.head
        for name in ("order_details", "customer_orders"):
            assert checkpointed <= status.views[name].position <= head  # resumed, not from 0
        assert engine.wait_for_views(head, timeout=WAIT)
        assert engine.status().parked_events == 0
        for order_id, position in acked.items():  # nothing acknowledged is lost
            assert position <= head
            assert engine.query(GetOrderById(order_id)) is not None
        resumed = [engine.query(query) for query in queries]
        stats = resumed[0]
        assert stats.total_orders == len(resumed[1].items)  # no order counted twice
        shipped = stats.by_status["shipped"]
        assert stats.revenue == Decimal("2.50") * shipped
        assert sum(units for _, units in stats.top_products) == 2 * (stats.total_orders)
        assert stats.total_orders + shipped == head  # every event counted exactly once
    all_memory: dict[str, Literal["memory", "lmdb"]] = {
        "order_details": "memory",
        "customer_orders": "memory",
    }
    with Engine.open(tmp_path, view_backends=all_memory) as engine:
        assert engine.wait_for_views(head, timeout=WAIT)
        assert [engine.query(query) for query in queries] == resumed  # equals a fresh replay


class BrokenView(WrappedView):
    """A view whose every apply fails (its storage is gone), even an empty one."""

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        raise OSError(f"cannot write {len(events)} events of {self.name} up to {up_to}")


def test_a_view_that_cannot_apply_at_all_keeps_retrying_loudly_and_the_rest_goes_on(
    tmp_path: Path,
) -> None:
    model = OrderModel()
    views = order_views(None)
    broken = BrokenView(views[1])  # customer_orders
    with Engine.open(tmp_path, durability="async", views=[views[0], broken, *views[2:]]) as engine:
        first = run(engine, model, create("o-1"))
        assert first is not None
        assert wait_until(lambda: engine.status().views["customer_orders"].error != "")
        status = engine.status()
        assert status.views["customer_orders"].error.startswith("OSError: cannot write")
        assert status.views["customer_orders"].state == "retrying"  # its storage, not a record
        assert status.views["customer_orders"].position == 0
        later = run(engine, model, create("o-2"))  # the write side goes on
        assert later is not None
        assert_answers(engine, model, [GetOrderById("o-2"), GetOrderStats(), SearchOrders()])
        with pytest.raises(ConsistencyTimeout):
            engine.query(GetCustomerOrders("Cust-1"), after=later.position, timeout=0.1)
        assert engine.status().views["customer_orders"].lag_events == later.position


def test_other_views_keep_advancing_while_one_is_retrying_and_it_catches_up_after(
    tmp_path: Path,
) -> None:
    model = OrderModel()
    views = order_views(None)
    flaky = FlakyView(views[3])  # order_stats, on the projector the three others share
    with (
        capture_logs() as logs,
        Engine.open(tmp_path, durability="async", views=[*views[:3], flaky]) as engine,
    ):
        first = run(engine, model, create("o-1"))
        assert first is not None
        assert engine.wait_for_views(first.position, timeout=WAIT)
        flaky.failing.set()
        for number in range(2, 12):
            run(engine, model, create(f"o-{number}", f"Cust-{number % 3}"))
        # The other views of the same projector take every commit meanwhile.
        assert_answers(engine, model, [GetOrderById("o-11"), GetCustomerOrders("Cust-2")])
        assert_answers(engine, model, [SearchOrders(page_size=100)])
        assert wait_until(lambda: engine.status().views["order_stats"].attempts >= 3)
        status = engine.status()
        for name in ("order_details", "customer_orders", "order_search"):
            assert (status.views[name].state, status.views[name].error) == ("ok", "")
            assert status.views[name].position == model.head
        stats = status.views["order_stats"]
        assert stats.state == "retrying"
        assert stats.error.startswith("DiskError: mdb_txn_commit: injected I/O error")
        assert stats.position == first.position
        assert stats.lag_events == model.head - first.position
        with pytest.raises(ConsistencyTimeout) as caught:
            engine.query(GetOrderStats(), after=model.head, timeout=0.1)
        stale = caught.value.stale_result
        assert isinstance(stale, OrderStats)
        assert stale.total_orders == 1
        flaky.failing.clear()
        # Recovered by itself: read-your-writes answers, and the status clears (the projector
        # clears it right after the apply that succeeded: wait for it, it is not atomic).
        assert_answers(engine, model, [GetOrderStats()])
        assert wait_until(lambda: engine.status().views["order_stats"].state == "ok")
        stats = engine.status().views["order_stats"]
        assert (stats.state, stats.error, stats.attempts) == ("ok", "", 0)
        assert (stats.failing_since, stats.retry_delay) == (0.0, 0.0)
        assert engine.status().parked_events == 0  # a failing storage parks nothing
        assert_answers(engine, model, model.probes())
    retries = [e for e in logs if e["event"] == "view_retrying"]
    assert {e["view"] for e in retries} == {"order_stats"}
    assert [e["attempts"] for e in retries] == list(range(1, flaky.failures + 1))
    recovered = [(e["view"], e["attempts"]) for e in logs if e["event"] == "view_recovered"]
    assert recovered == [("order_stats", flaky.failures)]


def test_the_retry_delay_doubles_from_the_first_one_and_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's policy: 50 ms, doubling, at most 5 s (and no overflow after days of failing).
    delays = [Backoff().delay(attempts) for attempts in range(1, 10)]
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert Backoff().delay(10**6) == 5.0
    # Through a real engine, with a shorter policy so that the cap is reached in milliseconds.
    monkeypatch.setattr(actors._projector, "VIEW_RETRY", Backoff(first=0.001, cap=0.004))
    views = order_views(None)
    flaky = FlakyView(views[0])  # order_details
    flaky.fail_next(6)
    with (
        capture_logs() as logs,
        Engine.open(tmp_path, durability="async", views=[flaky, *views[1:]]) as engine,
    ):
        created = engine.execute(create("o-1"))
        assert engine.query(GetOrderById("o-1"), after=created.position, timeout=WAIT) is not None
        assert wait_until(lambda: engine.status().views["order_details"].state == "ok")
    assert flaky.failures == 6
    retries = [e for e in logs if e["event"] == "view_retrying"]
    assert [e["attempts"] for e in retries] == [1, 2, 3, 4, 5, 6]
    # Doubling from the first delay, then held at the cap.
    assert [e["delay"] for e in retries] == pytest.approx([0.001, 0.002] + [0.004] * 4)
    for entry in retries:
        assert (entry["view"], entry["log_level"]) == ("order_details", "warning")
        assert entry["error"].startswith("DiskError: ")
    (recovered,) = [e for e in logs if e["event"] == "view_recovered"]
    assert (recovered["view"], recovered["attempts"]) == ("order_details", 6)
    assert recovered["log_level"] == "info"


def _retry_timers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("view-retry-") and t.is_alive()]


def test_retry_view_tries_a_retrying_view_at_once_and_close_cancels_pending_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Far longer than the test: only retry_view can make the view try again.
    monkeypatch.setattr(actors._projector, "VIEW_RETRY", Backoff(first=600.0, cap=600.0))
    views = order_views(None)
    flaky = FlakyView(views[0])  # order_details
    flaky.fail_next(1)
    with Engine.open(tmp_path, durability="async", views=[flaky, *views[1:]]) as engine:
        created = engine.execute(create("o-1"))
        assert wait_until(lambda: engine.status().views["order_details"].state == "retrying")
        status = engine.status().views["order_details"]
        assert (status.attempts, status.retry_delay, status.position) == (1, 600.0, 0)
        assert len(_retry_timers()) == 1
        engine.retry_view("order_details")
        assert engine.query(GetOrderById("o-1"), after=created.position, timeout=WAIT) is not None
        assert wait_until(lambda: engine.status().views["order_details"].state == "ok")
        assert engine.status().views["order_details"].attempts == 0
        assert wait_until(lambda: not _retry_timers())  # the pending timer was cancelled
        flaky.failing.set()
        engine.execute(create("o-2"))
        assert wait_until(lambda: engine.status().views["order_details"].state == "retrying")
        assert len(_retry_timers()) == 1
    assert wait_until(lambda: not _retry_timers())  # stopping the projector cancelled it
