"""Rebuild through the engine: equals live, progress, queries during it, races with live apply."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from engine_kit import COUNTER, Increment
from hypothesis import HealthCheck, given, settings
from readside_kit import (
    WAIT,
    GatedView,
    OrderModel,
    StepClock,
    WrappedView,
    answers,
    assert_answers,
    create,
    poisoned_views,
    random_steps,
    run,
    run_steps,
    steps,
)
from waiting import wait_until

import actors._router_link as router_link
from actors import CommandResult, Engine, RebuildReport
from actors._projector import ViewAdvanced
from actors._router import LONG_QUERY_SECONDS
from domain.errors import UnknownView
from domain.orders import ORDERS, AddOrderItem, ShipOrder
from store import RecordedEvent
from views import LmdbView, View
from views.orders import (
    ORDER_TAGS,
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    SearchOrders,
    order_views,
)

VIEW_NAMES = ("order_details", "customer_orders", "order_search", "order_stats")
ALL_MEMORY: dict[str, Literal["memory", "lmdb"]] = dict.fromkeys(VIEW_NAMES, "memory")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_rebuild_equals_live_and_a_fresh_replay_of_the_log(
    steps: Sequence[tuple[int, int, int, int, int, int]],
) -> None:
    model = OrderModel()
    with tempfile.TemporaryDirectory() as directory:
        with Engine.open(directory, durability="async", clock=StepClock()) as engine:
            run_steps(engine, model, steps)
            probes = model.probes()
            live = answers(engine, probes, after=model.head)
            assert live == [model.answer(query) for query in probes]
            report = engine.rebuild()
            assert report.views == VIEW_NAMES
            assert report.events == model.head  # one scan feeds every view
            assert answers(engine, probes) == live
            assert {s.position for s in engine.status().views.values()} == {model.head}
        with Engine.open(directory, view_backends=ALL_MEMORY) as engine:
            assert answers(engine, probes, after=model.head) == live
        with Engine.open(directory) as engine:  # the LMDB views adopted their rebuilt copies
            assert answers(engine, probes, after=model.head) == live
            assert engine.status().parked_events == 0


def test_rebuild_of_one_view_reports_progress_monotonically_up_to_the_total(
    tmp_path: Path,
) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        for number in range(4500):  # more than two replay batches
            engine.submit(create(f"o-{number}"))
        assert engine.wait_for_views(4500, timeout=WAIT)
        seen: list[tuple[int, int]] = []
        report = engine.rebuild("order_search", progress=lambda d, t: seen.append((d, t)))
        assert report.views == ("order_search",)
        assert report.events == 4500
        assert report.seconds > 0
        assert len(seen) >= 3
        assert {total for _, total in seen} == {4500}
        dones = [done for done, _ in seen]
        assert dones == sorted(dones)
        assert dones[-1] == 4500
        seen.clear()
        report = engine.rebuild(progress=lambda d, t: seen.append((d, t)))
        # One scan of the log feeds all four views: events are counted once.
        assert report.events == 4500
        assert report.views == ("order_details", "customer_orders", "order_search", "order_stats")
        dones = [done for done, _ in seen]
        assert dones == sorted(dones)
        assert seen[-1] == (4500, 4500)
        assert {total for _, total in seen} == {4500}


def test_rebuild_of_an_unknown_view_raises(tmp_path: Path) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        with pytest.raises(UnknownView):
            engine.rebuild("nope")
        with pytest.raises(UnknownView):
            engine.rebuild(view="order_Details")


def test_rebuild_of_some_views_scans_the_log_once_for_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a projection process runs when asked for some of its views (one scan per view before).
    with Engine.open(tmp_path, durability="async") as engine:
        for number in range(300):
            engine.submit(create(f"o-{number}"))
        assert engine.wait_for_views(300, timeout=WAIT)
        probes = [GetOrderById("o-7"), GetCustomerOrders("Cust-1"), GetOrderStats()]
        before = [engine.query(probe, timeout=WAIT) for probe in probes]
        read = engine._read
        scanned: list[int] = []
        read_all = engine.store.read_all

        def counting(start: int = 1, batch_size: int = 1000, **kwargs: Any) -> Any:
            for batch in read_all(start, batch_size, **kwargs):  # the real scan, counted
                scanned.extend(record.position for record in batch)
                yield batch

        monkeypatch.setattr(engine.store, "read_all", counting)
        report = read.rebuild_views(["order_details", "order_stats"], None)
        monkeypatch.undo()
        assert report.views == ("order_details", "order_stats")
        assert report.events == 300
        assert sorted(scanned) == list(range(1, 301))  # each position read once, for both
        assert [engine.query(probe, timeout=WAIT) for probe in probes] == before
        with pytest.raises(UnknownView):
            read.rebuild_views(["order_details", "nope"], None)


def test_a_rebuild_decodes_only_the_payloads_of_the_tags_its_views_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Orders and counters share the log; the order views handle order tags only, so their
    # rebuild's scan decodes the counters' envelopes up to the tag and never their payloads,
    # yet passes (and counts) every position, and the views come out as they were.
    with Engine.open(tmp_path, deciders=[ORDERS, COUNTER], durability="async") as engine:
        for number in range(60):
            engine.submit(create(f"o-{number}"))
            engine.submit(Increment(counter_id=f"c-{number % 7}", by=number + 1))
        engine.submit(Increment(counter_id="c-last")).get(timeout=WAIT)  # the log ends with one
        head = engine.store.head()
        assert engine.wait_for_views(head, timeout=WAIT)
        probes = [GetOrderById("o-7"), GetCustomerOrders("Cust-1"), GetOrderStats()]
        before = [engine.query(probe, timeout=WAIT) for probe in probes]
        codec = engine.store.codec
        decoded: list[str] = []
        decode_many = codec.decode_many
        decode_at = codec.decode_at

        def counting_many(first: int, values: list[bytes]) -> Any:
            records = decode_many(first, values)
            decoded.extend(record.tag for record in records)
            return records

        def counting_at(positions: list[int], values: list[bytes]) -> Any:
            records = decode_at(positions, values)
            decoded.extend(record.tag for record in records)
            return records

        monkeypatch.setattr(codec, "decode_many", counting_many)
        monkeypatch.setattr(codec, "decode_at", counting_at)
        report = engine.rebuild()
        monkeypatch.undo()
        assert report.events == head  # every position passed, counters' included
        assert decoded
        assert set(decoded) <= ORDER_TAGS  # no counter payload was decoded
        assert [engine.query(probe, timeout=WAIT) for probe in probes] == before


def test_a_rebuild_writes_its_lmdb_shadows_out_before_the_projector_adopts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write-out of a shadow's buffered rows takes ~0.5 s at 50k orders: on the projector's
    # thread (in adopt) the live views would wait for it.
    real = LmdbView.write_out
    writers: list[tuple[str, bool]] = []

    def observed(view: LmdbView) -> None:
        bulk = view._bulk
        writers.append((threading.current_thread().name, bulk is not None and bulk.dirty))
        real(view)

    with Engine.open(tmp_path, durability="async") as engine:
        for number in range(300):
            engine.submit(create(f"o-{number}"))
        assert engine.wait_for_views(300, timeout=WAIT)
        probes = [GetOrderById("o-7"), GetCustomerOrders("Cust-1")]
        before = [engine.query(probe, timeout=WAIT) for probe in probes]
        monkeypatch.setattr(LmdbView, "write_out", observed)
        engine.rebuild()
        monkeypatch.undo()
        assert [engine.query(probe, timeout=WAIT) for probe in probes] == before
    here = threading.current_thread().name
    assert [name for name, dirty in writers if dirty] == [here, here]  # the two LMDB views
    assert all(not dirty for name, dirty in writers if name != here)


def test_rebuild_of_an_empty_log_reports_nothing(tmp_path: Path) -> None:
    with Engine.open(tmp_path, durability="async") as engine:
        seen: list[tuple[int, int]] = []
        report = engine.rebuild(progress=lambda d, t: seen.append((d, t)))
        assert isinstance(report, RebuildReport)
        assert report.events == 0
        assert seen == [(0, 0)]
        assert engine.query(GetOrderStats()).total_orders == 0


class SlowShadow(WrappedView):
    """A rebuild shadow whose apply waits for ``release``; sets ``rebuilding`` when it does."""

    def __init__(self, inner: View, release: threading.Event, rebuilding: threading.Event) -> None:
        super().__init__(inner)
        self.release = release
        self.rebuilding = rebuilding

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        if not self.release.is_set():
            self.rebuilding.set()
            self.release.wait(60)
        super().apply(events, up_to)


class SlowRebuildView(WrappedView):
    """A real view whose rebuild shadows are slow shadows (see :class:`SlowShadow`)."""

    def __init__(self, inner: View, release: threading.Event, rebuilding: threading.Event) -> None:
        super().__init__(inner)
        self.release = release
        self.rebuilding = rebuilding

    def new_shadow(self) -> View:
        return SlowShadow(self.inner.new_shadow(), self.release, self.rebuilding)

    def adopt(self, shadow: View) -> None:
        # The real view adopts the real shadow inside the wrapper.
        assert isinstance(shadow, SlowShadow)
        super().adopt(shadow.inner)


def test_queries_are_answered_from_the_old_copy_throughout_a_slow_rebuild(
    tmp_path: Path,
) -> None:
    model = OrderModel()
    release, rebuilding = threading.Event(), threading.Event()
    views: list[View] = [SlowRebuildView(view, release, rebuilding) for view in order_views(None)]
    with Engine.open(tmp_path, durability="async", views=views, clock=StepClock()) as engine:
        run_steps(engine, model, random_steps(seed=11, count=400))
        probes = model.probes()[:200]
        expected = [model.answer(query) for query in probes]
        assert answers(engine, probes, after=model.head) == expected
        outcome: list[Any] = []
        rebuilder = threading.Thread(target=lambda: outcome.append(engine.rebuild()))
        rebuilder.start()
        try:
            assert rebuilding.wait(WAIT)
            # The rebuild is stuck in its first batch: every query is still answered, in full.
            assert answers(engine, probes) == expected
        finally:
            release.set()
        while rebuilder.is_alive():  # and while it runs to its end
            assert answers(engine, probes[:40]) == expected[:40]
            rebuilder.join(0.001)
        assert len(outcome) == 1
        assert answers(engine, probes) == expected


def test_rebuilds_racing_live_writes_neither_skip_nor_double_apply(tmp_path: Path) -> None:
    model = OrderModel()
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        number = 0
        try:
            while not stop.is_set() or number < 50:
                order_id = f"w-{number}"
                run(engine, model, create(order_id, f"Cust-{number % 3}"))
                add = AddOrderItem(
                    order_id=order_id, product_id="sku-1", quantity=2, price=Decimal("1.50")
                )
                run(engine, model, add)
                if number % 4 == 0:
                    run(engine, model, ShipOrder(order_id=order_id))
                number += 1
        except BaseException as error:
            errors.append(error)

    with Engine.open(tmp_path, durability="async", workers=2) as engine:
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for name in (None, "order_stats", "order_details", None, "order_search"):
                engine.rebuild(name)
        finally:
            stop.set()
            thread.join(60)
        assert errors == []
        assert engine.status().parked_events == 0  # a double apply of OrderCreated would park
        assert_answers(engine, model, model.probes())


def test_a_rebuild_does_not_leave_stale_parked_events_that_a_retry_would_double_apply(
    tmp_path: Path,
) -> None:
    model = OrderModel()
    # order_stats: a double apply would double count.
    views, poison = poisoned_views("order_stats", "o-bad")
    with Engine.open(tmp_path, durability="async", views=views) as engine:
        run(engine, model, create("o-bad", "Cust-1", ("sku-1", 2, Decimal(3))))
        run(engine, model, create("o-ok", "Cust-1", ("sku-2", 1, Decimal(1))))
        assert engine.wait_for_views(timeout=WAIT)
        assert [p.position for p in engine.parked("order_stats")] == [1]
        poison.poisoned.clear()
        engine.rebuild("order_stats")  # the event applies fine now
        assert engine.parked("order_stats") == []
        assert engine.retry_parked("order_stats", 1) is False
        assert_answers(engine, model, model.probes())


def test_a_rebuild_keeps_an_event_parked_while_it_is_still_poison(tmp_path: Path) -> None:
    views, _ = poisoned_views("order_details", "o-bad")
    with Engine.open(tmp_path, durability="async", views=views) as engine:
        engine.execute(create("o-bad"))
        engine.execute(create("o-ok"))
        assert engine.wait_for_views(timeout=WAIT)
        engine.rebuild("order_details")
        assert [p.position for p in engine.parked("order_details")] == [1]
        assert engine.query(GetOrderById("o-bad")) is None
        assert engine.query(GetOrderById("o-ok")) is not None
        assert engine.query(SearchOrders()).total == 2


class StuckSearch(WrappedView):
    """A search view whose queries wait for ``release``; ``entered`` is set once one waits."""

    def __init__(self, inner: View) -> None:
        super().__init__(inner)
        self.release = threading.Event()
        self.entered = threading.Event()

    def query(self, query: object) -> object:
        self.entered.set()
        self.release.wait(WAIT)
        return super().query(query)


def test_a_long_search_never_delays_point_queries_nor_the_views(tmp_path: Path) -> None:
    views = order_views(None)
    stuck = StuckSearch(views[2])
    with Engine.open(tmp_path, durability="async", views=[*views[:2], stuck, views[3]]) as engine:
        first = engine.execute(create("o-1"))
        answers: list[Any] = []
        searcher = threading.Thread(target=lambda: answers.append(engine.query(SearchOrders())))
        searcher.start()
        try:
            assert stuck.entered.wait(WAIT)
            # The search is stuck inside its view: point queries, stats and new commands all go
            # on, and the views (search included) keep applying.
            assert engine.query(GetOrderById("o-1"), after=first.position) is not None
            second = engine.execute(create("o-2"))
            assert engine.query(GetOrderStats(), after=second.position).total_orders == 2
            assert engine.wait_for_views(second.position, timeout=WAIT)
        finally:
            stuck.release.set()
            searcher.join(WAIT)
        assert answers[0].total in {1, 2}


def test_a_long_async_search_never_holds_up_async_point_queries(tmp_path: Path) -> None:
    views = order_views(None)
    stuck = StuckSearch(views[2])
    with Engine.open(tmp_path, durability="async", views=[*views[:2], stuck, views[3]]) as engine:
        first = engine.execute(create("o-1"))
        assert engine.wait_for_views(first.position, timeout=WAIT)

        async def scenario() -> tuple[Any, Any]:
            search = asyncio.ensure_future(engine.query_async(SearchOrders(), timeout=WAIT))
            try:
                await asyncio.get_running_loop().run_in_executor(None, stuck.entered.wait, WAIT)
                assert stuck.entered.is_set()
                # The search is stuck in its view: point queries, with and without a wait for
                # their view, are answered meanwhile (not queued behind it on one thread).
                point = await engine.query_async(GetOrderById("o-1"), timeout=WAIT)
                second = await engine.execute_async(create("o-2"))
                waited = await engine.query_async(
                    GetOrderById("o-2"), after=second.position, timeout=WAIT
                )
                assert not search.done()
            finally:
                stuck.release.set()
            assert (await search).total in {1, 2}
            return point, waited

        point, waited = asyncio.run(scenario())
        assert point.order_id == "o-1"
        assert waited.order_id == "o-2"


class BusySearch(WrappedView):
    """A search view whose queries hold the GIL (pure Python) for ``seconds`` first."""

    def __init__(self, inner: View, seconds: float) -> None:
        super().__init__(inner)
        self.seconds = seconds

    def query(self, query: object) -> object:
        deadline = time.perf_counter() + self.seconds
        while time.perf_counter() < deadline:
            pass
        return super().query(query)


def test_a_long_query_hands_the_gil_over_once_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = order_views(None)
    busy = BusySearch(views[2], seconds=3 * LONG_QUERY_SECONDS)
    real_sleep = time.sleep
    me = threading.get_ident()
    yields: list[float] = []

    def spy(seconds: float) -> None:
        if threading.get_ident() == me:
            yields.append(seconds)
        real_sleep(seconds)

    with Engine.open(tmp_path, durability="async", views=[*views[:2], busy, views[3]]) as engine:
        done = engine.execute(create("o-1"))
        assert engine.wait_for_views(done.position, timeout=WAIT)
        monkeypatch.setattr(time, "sleep", spy)
        assert engine.query(SearchOrders()).total == 1
        assert yields == [0]
        # Quick queries do not pay the hand-over (a few may, if the OS preempted them).
        busy.seconds = 0.0
        for _ in range(20):
            assert engine.query(SearchOrders()).total == 1
        assert len(yields) <= 3


def park_query(engine: Engine, query: object, after: int) -> tuple[threading.Thread, list[Any]]:
    """Ask ``query`` with ``after`` from a thread; return once the router has parked it."""
    answers: list[Any] = []
    asker = threading.Thread(
        target=lambda: answers.append(engine.query(query, after=after, timeout=WAIT))
    )
    asker.start()
    assert wait_until(lambda: engine.status().queries_waiting == 1)
    return asker, answers


class SharedGate(GatedView):
    """A gated view fed by the same projector as the other views (not isolated)."""

    isolated = False


def test_a_waiting_query_is_answered_once_its_own_view_applied_not_after_every_view(
    tmp_path: Path,
) -> None:
    views = order_views(None)
    first, last = SharedGate(views[0]), SharedGate(views[3])  # order_details ... order_stats
    with Engine.open(tmp_path, durability="async", views=[first, *views[1:3], last]) as engine:
        done = engine.execute(create("o-1"))
        assert engine.wait_for_views(done.position, timeout=WAIT)
        first.gate.clear()
        last.gate.clear()
        try:
            written = engine.execute(create("o-2"))
            assert first.entered.wait(WAIT)  # the step applying o-2 is held in its first view
            asker, answers = park_query(engine, GetOrderById("o-2"), written.position)
            first.gate.set()
            assert last.entered.wait(WAIT)  # the same step is now held in its last view
            # order_details has applied o-2: its query is answered while order_stats waits.
            asker.join(WAIT)
            assert not last.gate.is_set()
            assert [answer.order_id for answer in answers] == ["o-2"]
        finally:
            first.gate.set()
            last.gate.set()


def test_views_that_queries_wait_for_are_stepped_first(tmp_path: Path) -> None:
    views = order_views(None)
    first = SharedGate(views[0])  # order_details: first in the views' order
    with Engine.open(tmp_path, durability="async", views=[first, *views[1:]]) as engine:
        done = engine.execute(create("o-1"))
        assert engine.wait_for_views(done.position, timeout=WAIT)
        first.gate.clear()
        try:
            # Parked before the event exists, so the step that applies it knows who waits.
            asker, answers = park_query(engine, GetCustomerOrders("Cust-1"), done.position + 1)
            engine.execute(create("o-2"))
            asker.join(WAIT)
            # customer_orders applied o-2 and answered while order_details, first in order,
            # has not applied it yet (held at its gate).
            assert [order.order_id for order in answers[0].items] == ["o-2", "o-1"]
            assert engine.query(GetOrderById("o-2")) is None
        finally:
            first.gate.set()


def test_a_waited_for_view_takes_newer_events_between_the_later_views_of_a_step(
    tmp_path: Path,
) -> None:
    details, customers, search, stats = order_views(None)
    held, last = SharedGate(search), SharedGate(stats)
    with Engine.open(tmp_path, durability="async", views=[details, customers, held, last]) as e:
        done = e.execute(create("o-1"))
        assert e.wait_for_views(done.position, timeout=WAIT)
        held.gate.clear()
        last.gate.clear()
        try:
            e.execute(create("o-2"))
            # The step for o-2 applied customer_orders, and is held in order_search.
            assert held.entered.wait(WAIT)
            newer = e.execute(create("o-3"))
            asker, answers = park_query(e, GetCustomerOrders("Cust-1"), newer.position)
            held.gate.set()
            asker.join(WAIT)
            # customer_orders, already past in this step, took o-3 before order_stats's turn
            # (held at its gate): not one whole step later.
            assert last.entered.wait(WAIT)  # the step goes on to order_stats, held there
            assert not last.gate.is_set()
            assert [order.order_id for order in answers[0].items] == ["o-3", "o-2", "o-1"]
        finally:
            held.gate.set()
            last.gate.set()


class _HeldWakes:
    """A fault seam: the router handles a :class:`ViewAdvanced` only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.passed = threading.Event()  # a ViewAdvanced went past the seam

    def __call__(self, kind: str, message: object) -> None:
        if kind == "router" and isinstance(message, ViewAdvanced):
            self.release.wait(WAIT)
            self.passed.set()


class _Recording(WrappedView):
    """Records, per apply, whether the router had been let through to answer by then."""

    def __init__(self, inner: View, seam: _HeldWakes) -> None:
        super().__init__(inner)
        self.seam = seam
        self.answering_first: list[bool] = []
        self.applied = threading.Event()

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Record, then apply."""
        if events:
            self.answering_first.append(self.seam.passed.is_set())
            self.applied.set()
        super().apply(events, up_to)


def _held_engine(path: Path) -> tuple[Engine, _HeldWakes, _Recording]:
    seam = _HeldWakes()
    details, customers, search, stats = order_views(None)
    last = _Recording(stats, seam)
    engine = Engine.open(
        path, durability="async", views=[details, customers, search, last], fault_seam=seam
    )
    return engine, seam, last


def _caught_up_then_held(engine: Engine, seam: _HeldWakes, last: _Recording) -> CommandResult:
    """Commit o-1 with the router free, wait for every view, then hold the router again."""
    seam.release.set()
    done = engine.execute(create("o-1"))
    assert engine.wait_for_views(done.position, timeout=WAIT)
    seam.release.clear()
    seam.passed.clear()
    last.applied.clear()
    return done


def test_the_projector_lets_the_router_answer_before_going_on_with_the_other_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router_link, "HAND_OVER_SECONDS", WAIT)
    engine, seam, last = _held_engine(tmp_path)
    with engine:
        done = _caught_up_then_held(engine, seam, last)
        asker, answers = park_query(engine, GetOrderById("o-2"), done.position + 1)
        engine.execute(create("o-2"))
        # order_details applied o-2 and told the router, which is held: the projector pauses
        # rather than go on to the other views (order_stats last) while its answer waits.
        assert not last.applied.wait(0.5)
        seam.release.set()
        asker.join(WAIT)
        assert [view.order_id for view in answers] == ["o-2"]
        assert last.applied.wait(WAIT)
        assert last.answering_first[-1]


def test_a_query_the_router_is_slow_to_answer_holds_the_views_back_only_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router_link, "HAND_OVER_SECONDS", 0.05)
    engine, seam, last = _held_engine(tmp_path)
    with engine:
        done = _caught_up_then_held(engine, seam, last)
        try:
            asker, answers = park_query(engine, GetOrderById("o-2"), done.position + 1)
            written = engine.execute(create("o-2"))
            # The router stays held: every view still gets o-2 once the pause's budget is spent.
            assert last.applied.wait(WAIT)
            assert wait_until(lambda: last.position() == written.position)
            assert not last.answering_first[-1]
        finally:
            seam.release.set()
        asker.join(WAIT)
        assert [view.order_id for view in answers] == ["o-2"]


class _StaleAtFirstLook(WrappedView):
    """Reads one position behind until the router has looked once: the projector advanced the
    view between the router's check and its parking of the query, seeing nobody waiting."""

    def __init__(self, inner: View) -> None:
        super().__init__(inner)
        self.armed = False

    def position(self) -> int:
        real = self.inner.position()
        if not self.armed:
            return real
        if threading.current_thread().name.startswith("QueryRouter"):
            self.armed = False  # the router's first look is the stale one; the next is true
        return real - 1


def test_a_query_parked_just_after_its_batch_advanced_the_view_is_answered(
    tmp_path: Path,
) -> None:
    view = _StaleAtFirstLook(order_views(None)[0])
    with Engine.open(tmp_path / "data", views=[view], durability="async") as engine:
        done = engine.execute(create("A-1"), timeout=WAIT)
        assert engine.wait_for_views(done.position, timeout=WAIT)
        view.armed = True
        # No batch comes after this one: only the router's second look can answer it.
        found = engine.query(GetOrderById("A-1"), after=done.position, timeout=WAIT)
        assert found is not None
        assert not view.armed
        assert engine.status().queries_waiting == 0


def test_read_your_writes_holds_for_every_thread_while_nobody_else_waits(tmp_path: Path) -> None:
    # The projector tells the router of a batch only while a query waits; a query parked just
    # after a batch that nobody waited for must still be answered (the router checks the view
    # again after parking it). Each thread's last query has no later batch to rescue it.
    errors: list[BaseException] = []

    def client(number: int) -> None:
        try:
            for step in range(150):
                done = engine.execute(create(f"T{number}-{step:04d}"), timeout=WAIT)
                found = engine.query(
                    GetOrderById(done.aggregate_id), after=done.position, timeout=WAIT
                )
                assert found is not None
        except BaseException as error:  # reported below
            errors.append(error)

    with Engine.open(tmp_path / "data", durability="async") as engine:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 10)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert engine.status().queries_waiting == 0
