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

from actors import CommitFailed, Engine, EngineError
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
