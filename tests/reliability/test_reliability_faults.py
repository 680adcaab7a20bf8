"""Faults injected around the real store: failed commits, failed reads, a full map, slow views.

The fault seam is ``Engine.open(store_wrapper=...)``: a wrapper around the real store that fails
on purpose, never a mock of our own components.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lmdb
import pytest
from reliability_kit import (
    STEPS,
    Ack,
    check_acks,
    check_log,
    check_views_match_rebuild,
    command_for,
    command_id,
)
from waiting import wait_until

from actors import CommandTimeout, CommitFailed, Engine, EngineError
from store import EventStore, RecordedEvent
from views import View
from views.orders import order_views


class FaultyStore:
    """The real store, with faults switched on by the test (one shot each)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.fail_batch_at: int | None = None  # fail the Nth append_batch call (1-based)
        self.batches = 0
        self.fail_lookup = False
        self.fail_read_stream = 0  # how many read_stream calls fail from now on
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def append_batch(self, appends: Sequence[Any]) -> list[Any]:
        with self._lock:
            self.batches += 1
            if self.batches == self.fail_batch_at:
                raise lmdb.DiskError("injected: the disk refused the commit")
        return self.store.append_batch(appends)

    def lookup_command(self, cid: str) -> Any:
        with self._lock:
            if self.fail_lookup:
                self.fail_lookup = False
                raise lmdb.ReadersFullError("injected: no reader slot")
        return self.store.lookup_command(cid)

    def read_stream(
        self, stream_id: str, from_version: int = 1, *, stream_type: str
    ) -> list[RecordedEvent]:
        with self._lock:
            if self.fail_read_stream:
                self.fail_read_stream -= 1
                raise OSError(5, "injected: EIO")
        return self.store.read_stream(stream_id, from_version, stream_type=stream_type)


def open_faulty(path: Path, **options: Any) -> tuple[Engine, FaultyStore]:
    wrappers: list[FaultyStore] = []

    def wrap(store: EventStore) -> FaultyStore:
        wrappers.append(FaultyStore(store))
        return wrappers[0]

    engine = Engine.open(path, store_wrapper=wrap, **options)
    return engine, wrappers[0]


def run_orders(engine: Engine, tag: str, orders: int, threads: int = 4) -> list[Any]:
    """Submit ``orders`` orders' commands from several threads; return every outcome."""
    outcomes: list[Any] = []
    guard = threading.Lock()

    def work(thread: int) -> None:
        futures = [
            (cid, engine.submit(command_for(cid), timeout=30))
            for order in range(thread, orders, threads)
            for step in range(STEPS)
            for cid in [command_id(tag, 0, order, step)]
        ]
        for cid, future in futures:
            try:
                outcome: Any = future.get(timeout=30)
            except EngineError as error:
                outcome = error
            with guard:
                outcomes.append((cid, outcome))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return outcomes


def acks_of(outcomes: list[Any]) -> list[Ack]:
    return [
        Ack(cid, result.aggregate_id, result.version, result.position)
        for cid, result in outcomes
        if not isinstance(result, Exception)
    ]


def test_a_failed_commit_fails_its_callers_writes_nothing_and_the_engine_keeps_serving(
    tmp_path: Path,
) -> None:
    # Small batches: the load spans many commits, and the third one fails.
    engine, faulty = open_faulty(tmp_path / "data", max_batch=32)
    with engine:
        faulty.fail_batch_at = 3
        outcomes = run_orders(engine, "cf", 60)
        failed = [(cid, o) for cid, o in outcomes if isinstance(o, Exception)]
        assert failed, "the third batch failed: some callers must have been told"
        assert all(isinstance(error, CommitFailed) for _, error in failed), failed
        for cid, _ in failed:
            assert engine.store.lookup_command(cid) is None, f"{cid} failed yet is in the log"
        check_acks(engine.store, acks_of(outcomes))
        check_log(engine.store)
        # The engine keeps serving: the failed commands go through when sent again.
        retried = []
        for cid, _ in sorted(failed, key=lambda pair: command_for(pair[0]).command_id):
            retried.append((cid, retry(engine, cid)))
        check_acks(engine.store, acks_of(retried))
        model = check_log(engine.store)
        assert len(model.events) == 60 * STEPS
        check_views_match_rebuild(engine, model)


def retry(engine: Engine, cid: str) -> Any:
    # A command decided on top of a failed one fails too; its own retry then succeeds.
    deadline = time.monotonic() + 10
    while True:
        try:
            return engine.execute(command_for(cid))
        except CommitFailed:
            if time.monotonic() > deadline:
                raise


def test_a_transient_read_failure_while_loading_is_answered_at_once(tmp_path: Path) -> None:
    engine, faulty = open_faulty(tmp_path / "data")
    with engine:
        faulty.fail_read_stream = 1
        started = time.monotonic()
        try:
            outcome: Any = engine.execute(command_for("rt.0.0.0"), timeout=5)
        except EngineError as error:  # a typed refusal is fine too; a hang or raw error is not
            outcome = error
        assert time.monotonic() - started < 4, "the caller waited for its timeout"
        assert engine.execute(command_for("rt.0.0.0")).version == 1
        if isinstance(outcome, Exception):
            assert engine.store.head() == 1
        check_log(engine.store)


def test_a_failed_idempotency_lookup_reaches_the_caller_as_an_engine_error(
    tmp_path: Path,
) -> None:
    engine, faulty = open_faulty(tmp_path / "data")
    with engine:
        engine.execute(command_for("rf.0.0.0"))
        head = engine.store.head()
        faulty.fail_lookup = True
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is what is checked
            engine.execute(command_for("rf.0.0.1"), timeout=5)
        assert engine.store.head() == head
        assert engine.execute(command_for("rf.0.0.1")).version == 2
        assert isinstance(caught.value, EngineError), type(caught.value)


def test_a_persistent_read_failure_while_loading_fails_the_command_with_an_engine_error(
    tmp_path: Path,
) -> None:
    engine, faulty = open_faulty(tmp_path / "data")
    try:
        head = engine.store.head()
        faulty.fail_read_stream = 2  # the load at activation, and its retry by the command
        started = time.monotonic()
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is what is checked
            engine.execute(command_for("rs.0.0.0"), timeout=1.5)
        assert time.monotonic() - started < 1.0, f"{caught.value!r} came after the timeout"
        assert engine.store.head() == head
        # The engine keeps serving once the store reads again.
        assert engine.execute(command_for("rs.0.0.0")).version == 1
        assert isinstance(caught.value, EngineError), type(caught.value)
    finally:
        engine.close(timeout=1)  # short, in case a lost command is still counted in flight


@pytest.mark.parametrize("map_size", [64 * 1024, 1024 * 1024])
def test_a_tiny_map_grows_and_no_caller_sees_an_error(tmp_path: Path, map_size: int) -> None:
    with Engine.open(tmp_path / "data", map_size=map_size, durability="async") as engine:
        outcomes = run_orders(engine, "mf", 1200)
        errors = [o for _, o in outcomes if isinstance(o, Exception)]
        assert errors == []
        assert engine.store.map_size > map_size
        check_acks(engine.store, acks_of(outcomes))
        model = check_log(engine.store)
        assert len(model.events) == 1200 * STEPS
        check_views_match_rebuild(engine, model)


class SlowView:
    """A real view whose ``apply`` is slowed down, to make it lag far behind the writers."""

    def __init__(self, inner: View, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.name = inner.name
        self.backend = inner.backend
        self.tags = inner.tags
        self.skip_unknown = inner.skip_unknown
        self.query_types = inner.query_types

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        time.sleep(self.delay)  # the slowness under test, not a synchronisation
        self.inner.apply(events, up_to)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SlowPerEvent(SlowView):
    """A real view slowed down per event applied: it cannot follow a full write load."""

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        time.sleep(self.delay * len(events))  # the slowness under test, not a synchronisation
        self.inner.apply(events, up_to)


def _max_lag_while(engine: Engine, tag: str, orders: int) -> int:
    """Run ``orders`` orders' commands; return the most the slow view was behind meanwhile."""
    worst = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            worst[0] = max(worst[0], engine.status().views["order_stats"].lag_events)
            done.wait(0.002)  # the sampling period, not a synchronisation

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        outcomes = run_orders(engine, tag, orders)
    finally:
        done.set()
        sampler.join(30)
    assert all(not isinstance(o, Exception) for _, o in outcomes)
    return worst[0]


def test_max_view_lag_bounds_how_far_a_slow_view_falls_behind(tmp_path: Path) -> None:
    limit, in_flight = 100, 16

    def views() -> list[Any]:
        chosen: list[Any] = order_views(None)
        chosen[3] = SlowPerEvent(chosen[3], delay=0.0005)  # ~2k events/s at most
        return chosen

    options: dict[str, Any] = {"durability": "async", "max_in_flight": in_flight}
    with Engine.open(tmp_path / "free", views=views(), **options) as engine:
        free = _max_lag_while(engine, "free", 300)
    with Engine.open(tmp_path / "bounded", views=views(), max_view_lag=limit, **options) as engine:
        bounded = _max_lag_while(engine, "bounded", 300)
        assert engine.wait_for_views(timeout=60)
        check_views_match_rebuild(engine, check_log(engine.store))
    # The door closes at the commit that crosses the bound (the writer tells the bound every
    # head): only commands admitted before it, at most the ones in flight (one event each here),
    # still land; 116 = 100 + 16 in every run measured.
    assert free > 4 * limit, "without the bound the slow view must really fall behind"
    assert bounded <= limit + 2 * in_flight, (bounded, free)


class GatedView(SlowView):
    """A real view whose ``apply`` waits for ``opened``: it stands still until the test says."""

    def __init__(self, inner: View) -> None:
        super().__init__(inner, delay=0.0)
        self.opened = threading.Event()

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        self.opened.wait(60)  # the stillness under test; the test opens it before closing
        self.inner.apply(events, up_to)


def test_commands_held_by_max_view_lag_time_out_then_go_on_once_the_view_moves(
    tmp_path: Path,
) -> None:
    views: list[Any] = order_views(None)
    gated = GatedView(views[3])
    views[3] = gated
    with Engine.open(tmp_path / "data", views=views, durability="async", max_view_lag=2) as engine:
        try:
            for step in range(3):  # one order's first 3 events, the view standing still
                engine.execute(command_for(command_id("held", 0, 0, step)), timeout=10)
            wait_until(lambda: engine.status().views["order_stats"].lag_events > 2)
            with pytest.raises(CommandTimeout, match="engine busy"):
                engine.submit(command_for(command_id("held", 0, 1, 0)), timeout=0.2)
            waiting = threading.Thread(
                target=lambda: engine.execute(command_for(command_id("held", 0, 2, 0)), timeout=30)
            )
            waiting.start()
            gated.opened.set()  # the view moves: the held command is admitted and commits
            waiting.join(30)
            assert not waiting.is_alive()
        finally:
            gated.opened.set()
        assert engine.wait_for_views(timeout=30)
        check_views_match_rebuild(engine, check_log(engine.store))


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_a_slow_view_does_not_slow_writers_nor_grow_memory_or_the_file(tmp_path: Path) -> None:
    views: list[Any] = order_views(None)
    views[3] = SlowView(views[3], delay=0.05)
    with Engine.open(tmp_path / "data", views=views, durability="async") as engine:
        run_orders(engine, "warm", 100)
        rss_before, size_before = rss_bytes(), engine.store.file_size()
        head_before = engine.store.head()
        outcomes = run_orders(engine, "slow", 1500)
        assert all(not isinstance(o, Exception) for _, o in outcomes)
        status = engine.status()
        assert status.views["order_stats"].lag_events > 0, "the slow view must really lag"
        written = sum(len(value) for _, value in engine.store.read_raw(head_before + 1, 10**6))
        growth = engine.store.file_size() - size_before
        # LMDB needs index pages and copy-on-write slack; a pinned snapshot would grow the file
        # far beyond this.
        assert growth < 8 * written + 4 * 2**20, (growth, written)
        assert rss_bytes() - rss_before < 300 * 2**20
        model = check_log(engine.store)
        check_views_match_rebuild(engine, model)
