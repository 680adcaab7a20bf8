"""Supervision: every caller is answered, with a typed error, whatever fails inside an actor.

Faults are raised through the engine's ``fault_seam`` (inside a given actor kind's message
handling) or a store wrapper around the real store; everything else is the real engine.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lmdb
import pykka
import pytest
from engine_kit import (
    TIMEOUT,
    DelegatingStore,
    InjectedFault,
    add,
    assert_log_contiguous,
    create,
    open_engine,
)
from waiting import wait_until

from actors import ActorFailed, ConsistencyTimeout, Engine, EngineClosed, EngineError
from actors._messages import AppendCommand, Execute, HeadAdvanced
from actors._projector import CatchUp
from actors._router import Ask
from store import CommandRecord, Committed, EventStore, RecordedEvent, Snapshot, StreamAppend
from views.orders import GetOrderById


class Seam:
    """Raises :class:`InjectedFault` in the next ``times`` messages of one type in one kind."""

    def __init__(self, kind: str, message_type: type | tuple[type, ...], times: int = 1) -> None:
        self.kind = kind
        self.message_type = message_type
        self.left = times
        self.raised = 0
        self._lock = threading.Lock()

    def __call__(self, kind: str, message: Any) -> None:
        if kind != self.kind or not isinstance(message, self.message_type):
            return
        with self._lock:
            if self.left <= 0:
                return
            self.left -= 1
            self.raised += 1
        raise InjectedFault(f"injected into the {kind} handling {type(message).__name__}")


class Gate:
    """Holds one actor kind's messages of one type until opened (a stuck actor)."""

    def __init__(self, kind: str, message_type: type | tuple[type, ...]) -> None:
        self.kind = kind
        self.message_type = message_type
        self.opened = threading.Event()
        self.held = threading.Event()

    def __call__(self, kind: str, message: Any) -> None:
        if kind == self.kind and isinstance(message, self.message_type):
            self.held.set()
            if not self.opened.wait(TIMEOUT * 3):
                raise InjectedFault("the test never opened the gate")


def settled(futures: Sequence[pykka.Future[Any]], timeout: float) -> list[Any]:
    """Return each future's value or its exception; fail if one is not settled in time."""
    outcomes: list[Any] = []
    for future in futures:
        try:
            outcomes.append(future.get(timeout=timeout))
        except pykka.Timeout:
            pytest.fail("a future never settled: its caller would hang")
        except Exception as error:
            outcomes.append(error)
    return outcomes


# ---------------------------------------------------------------- aggregate: restart on demand


def test_a_failing_aggregate_fails_only_the_command_it_held_and_its_queue_goes_to_a_successor(
    tmp_path: Path,
) -> None:
    seam = Seam("aggregate", Execute, times=0)
    with open_engine(tmp_path, fault_seam=seam) as engine:
        engine.execute(create("o"))
        seam.left = 1
        futures = [engine.submit(add("o", f"p{i}")) for i in range(20)]
        outcomes = settled(futures, TIMEOUT)
        failed = [o for o in outcomes if isinstance(o, Exception)]
        assert len(failed) == 1
        assert isinstance(failed[0], ActorFailed)
        assert failed[0].actor == "aggregate"
        assert not failed[0].outcome_unknown
        # Every command queued behind the failure was decided, in order, by the successor.
        versions = [o.version for o in outcomes if not isinstance(o, Exception)]
        assert versions == list(range(2, 21))
        assert engine.status().in_flight == 0
        # Nothing was written for the failed command.
        assert len(assert_log_contiguous(engine.store)["o"]) == 20


def test_a_retry_of_the_failed_command_with_its_id_is_applied_once(tmp_path: Path) -> None:
    seam = Seam("aggregate", Execute, times=0)
    with open_engine(tmp_path, fault_seam=seam) as engine:
        engine.execute(create("o"))
        seam.left = 1
        command = add("o", "pear")
        with pytest.raises(ActorFailed):
            engine.execute(command, timeout=TIMEOUT)
        first = engine.execute(command, timeout=TIMEOUT)
        again = engine.execute(command, timeout=TIMEOUT)
        assert first == again
        assert first.version == 2
        assert engine.store.head() == 2


# ---------------------------------------------------------------- writer: resume


def test_a_failing_writer_fails_that_append_and_goes_on(tmp_path: Path) -> None:
    seam = Seam("writer", AppendCommand, times=0)
    with open_engine(tmp_path, fault_seam=seam) as engine:
        engine.execute(create("o"))
        seam.left = 1
        command = add("o", "pear")
        with pytest.raises(ActorFailed) as caught:
            engine.execute(command, timeout=TIMEOUT)
        assert caught.value.actor == "writer"
        # The aggregate reloaded from the log: versions continue without a gap.
        assert engine.execute(add("o", "fig")).version == 2
        assert engine.execute(command).version == 3  # the retry: nothing was written before
        assert engine.status().in_flight == 0
        assert_log_contiguous(engine.store)


class FailsAfterCommit(DelegatingStore):
    """Commits the batch for real, then raises once: the outcome is unknown to the writer."""

    def __init__(self, store: EventStore | DelegatingStore) -> None:
        super().__init__(store)
        self.armed = False

    def append_batch(self, appends: Sequence[StreamAppend]) -> list[Committed | EngineError]:
        """Append through the real store; raise afterwards once armed."""
        results = super().append_batch(appends)
        with self._lock:
            armed, self.armed = self.armed, False
        if armed:
            raise InjectedFault("failed after the commit")
        return results


def test_a_store_failure_after_its_commit_is_answered_from_the_log_not_as_nothing_written(
    tmp_path: Path,
) -> None:
    wrappers: list[FailsAfterCommit] = []

    def wrap(store: EventStore) -> FailsAfterCommit:
        wrappers.append(FailsAfterCommit(store))
        return wrappers[-1]

    with open_engine(tmp_path, store_wrapper=wrap, views=None) as engine:
        engine.execute(create("o"))
        wrappers[0].armed = True
        command = add("o", "pear")
        # The batch is in the log: the caller gets its true result, not "nothing was written".
        result = engine.execute(command, timeout=TIMEOUT)
        assert not wrappers[0].armed  # the fault did fire
        assert (result.version, result.position) == (2, 2)
        assert engine.execute(command, timeout=TIMEOUT) == result  # a retry: the same answer
        assert engine.execute(add("o", "fig")).version == 3
        # The views were told of the head, though the batch's own notification was lost.
        assert engine.wait_for_views(timeout=TIMEOUT)
        assert engine.query(GetOrderById(order_id="o")).item_count == 3


# ---------------------------------------------------------------- router and projector: resume


def test_a_failing_router_fails_that_query_only(tmp_path: Path) -> None:
    seam = Seam("router", Ask, times=0)
    with open_engine(tmp_path, views=None, fault_seam=seam) as engine:
        result = engine.execute(create("o"))
        seam.left = 1

        async def ask(after: int) -> Any:
            return await engine.query_async(
                GetOrderById(order_id="o"), after=after, timeout=TIMEOUT
            )

        # Ahead of the head, so it goes to the router (a view already there answers without it).
        with pytest.raises(ActorFailed) as caught:
            asyncio.run(ask(result.position + 1))
        assert caught.value.actor == "router"
        later = engine.execute(create("o2"))
        assert asyncio.run(ask(later.position)).order_id == "o"
        assert engine.status().queries_waiting == 0


def test_a_failing_projector_resumes_and_its_views_still_reach_the_head(tmp_path: Path) -> None:
    seam = Seam("projector", (CatchUp, HeadAdvanced), times=0)
    with open_engine(tmp_path, views=None, fault_seam=seam) as engine:
        seam.left = 5
        results = [engine.execute(create(f"o{i}")) for i in range(10)]
        assert engine.wait_for_views(results[-1].position, timeout=TIMEOUT)
        assert seam.raised == 5
        assert all(view.state == "ok" for view in engine.status().views.values())
        assert engine.query(GetOrderById(order_id="o9")).order_id == "o9"


# ---------------------------------------------------------------- the reproduction


class FlakyReads(DelegatingStore):
    """Every aggregate-side read fails with ``lmdb.ReadersFullError`` at a seeded rate."""

    def __init__(self, store: EventStore | DelegatingStore, rate: float, seed: int) -> None:
        super().__init__(store)
        self.rate = rate
        self.random = random.Random(seed)
        self.failures = 0

    def _maybe_fail(self, what: str) -> None:
        with self._lock:
            fail = self.random.random() < self.rate
            self.failures += fail
        if fail:
            raise lmdb.ReadersFullError(f"injected: {what}")

    def lookup_command(self, command_id: str) -> CommandRecord | None:
        """Maybe fail, else delegate."""
        self._maybe_fail("lookup_command")
        return super().lookup_command(command_id)

    def read_stream(
        self, stream_id: str, from_version: int = 1, *, stream_type: str
    ) -> list[RecordedEvent]:
        """Maybe fail, else delegate."""
        self._maybe_fail("read_stream")
        return super().read_stream(stream_id, from_version, stream_type=stream_type)

    def load_snapshot(self, stream_id: str, *, stream_type: str) -> Snapshot | None:
        """Maybe fail, else delegate."""
        self._maybe_fail("load_snapshot")
        return super().load_snapshot(stream_id, stream_type=stream_type)

    def stream_version(self, stream_id: str, *, stream_type: str) -> int:
        """Maybe fail, else delegate."""
        self._maybe_fail("stream_version")
        return super().stream_version(stream_id, stream_type=stream_type)


def test_failing_store_reads_under_passivation_churn_never_leave_a_caller_hanging(
    tmp_path: Path,
) -> None:
    flaky: list[FlakyReads] = []

    def wrap(store: EventStore) -> FlakyReads:
        flaky.append(FlakyReads(store, rate=0.0, seed=20261205))
        return flaky[-1]

    orders = [f"o{i}" for i in range(300)]
    with open_engine(
        tmp_path, store_wrapper=wrap, max_live_aggregates=16, idle_timeout=0.05, snapshot_every=3
    ) as engine:
        for order in orders:
            engine.execute(create(order))
        flaky[0].rate = 0.03

        def send(thread: int) -> list[pykka.Future[Any]]:
            picks = random.Random(thread)
            return [engine.submit(add(picks.choice(orders), f"p{n}")) for n in range(150)]

        with ThreadPoolExecutor(3) as pool:
            futures = [f for batch in pool.map(send, range(3)) for f in batch]
        outcomes = settled(futures, 20.0)
        assert flaky[0].failures > 0
        assert all(isinstance(o, EngineError) or o.version > 1 for o in outcomes)
        wait_until(lambda: engine.status().in_flight == 0)
        # Once the faults stop, every aggregate serves again and the log is whole.
        flaky[0].rate = 0.0
        for order in orders:
            engine.execute(add(order, "last"), timeout=TIMEOUT)
        streams = assert_log_contiguous(engine.store)
        assert sum(len(stream) for stream in streams.values()) == engine.store.head()


# ---------------------------------------------------------------- close is total


def test_every_call_racing_close_gets_a_result_or_engine_closed(tmp_path: Path) -> None:
    engine = Engine.open(tmp_path, durability="async")
    engine.execute(create("o"))
    errors: list[BaseException] = []
    started = threading.Barrier(5)

    def hammer(call: Callable[[], Any]) -> None:
        started.wait(TIMEOUT)
        while True:
            try:
                call()
            except EngineClosed:
                return
            except BaseException as error:
                errors.append(error)
                return

    def read_own_writes() -> Any:
        try:
            return engine.query(GetOrderById(order_id="o"), after=engine.store.head(), timeout=1)
        except ConsistencyTimeout as stale:  # a stale answer is an answer (a loaded machine)
            return stale.stale_result

    calls: list[Callable[[], Any]] = [
        lambda: engine.execute(add("o", "pear"), timeout=TIMEOUT),
        read_own_writes,
        engine.status,
        lambda: engine.rebuild("order_details"),
    ]
    threads = [threading.Thread(target=hammer, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    started.wait(TIMEOUT)
    wait_until(lambda: engine.store.head() > 20)
    engine.close()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert errors == []


def test_a_parked_query_is_answered_at_once_when_the_engine_closes(tmp_path: Path) -> None:
    gate = Gate("projector", (CatchUp, HeadAdvanced))
    engine = Engine.open(tmp_path, durability="async", fault_seam=gate)
    try:
        result = engine.execute(create("o"))
        outcome: list[BaseException | Any] = []

        def wait_for_it() -> None:
            try:
                outcome.append(
                    engine.query(GetOrderById(order_id="o"), after=result.position, timeout=60)
                )
            except BaseException as error:
                outcome.append(error)

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        wait_until(lambda: engine.status().queries_waiting == 1)
        closer = threading.Thread(target=engine.close)
        closer.start()
        # Answered while the projector is still stuck: not after the 60 s of its timeout.
        waiter.join(TIMEOUT)
        assert not waiter.is_alive()
        assert len(outcome) == 1
        assert isinstance(outcome[0], EngineClosed)
    finally:
        gate.opened.set()
        engine.close()
    closer.join(TIMEOUT)
    assert not closer.is_alive()


def test_a_cancelled_async_query_leaves_nothing_parked(tmp_path: Path) -> None:
    gate = Gate("projector", (CatchUp, HeadAdvanced))
    with open_engine(tmp_path, views=None, fault_seam=gate) as engine:
        try:
            result = engine.execute(create("o"))

            async def cancel_one() -> None:
                task = asyncio.create_task(
                    engine.query_async(
                        GetOrderById(order_id="o"), after=result.position, timeout=60
                    )
                )
                deadline = asyncio.get_running_loop().time() + TIMEOUT
                while engine.status().queries_waiting != 1:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.005)  # polling a condition with a deadline
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

            asyncio.run(cancel_one())
            wait_until(lambda: engine.status().queries_waiting == 0)
        finally:
            gate.opened.set()
