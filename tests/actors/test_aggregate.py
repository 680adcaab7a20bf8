"""The aggregate actor: serialization, snapshots, pipelining, a generic decider, failures."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from engine_kit import (
    COUNTER,
    TIMEOUT,
    CounterDecider,
    CounterState,
    FailingStore,
    FlakyReads,
    GatedStore,
    Increment,
    Reset,
    add,
    assert_log_contiguous,
    create,
    live_state,
    open_engine,
    remove,
    replay,
    ship,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import wait_until

from actors import (
    AggregateNotFound,
    CommandRejected,
    CommitFailed,
    IdempotencyConflict,
    StorageError,
)
from domain.orders import ORDERS, OrderCommand

# Many more commands of one aggregate in flight than any fixed memory of recent command ids.
IN_FLIGHT = 200


def test_eight_threads_hammering_one_aggregate_stay_serialized(tmp_path: Path) -> None:
    per_thread = 60
    with open_engine(tmp_path) as engine:
        engine.execute(create("o"))
        start = threading.Barrier(8)
        results: list[Any] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def hammer(n: int) -> None:
            try:
                start.wait(TIMEOUT)
                for i in range(per_thread):
                    result = engine.execute(add("o", f"p{n}-{i % 5}"), timeout=TIMEOUT)
                    with lock:
                        results.append(result)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 3)
        assert not errors
        versions = sorted(result.version for result in results)
        assert versions == list(range(2, 8 * per_thread + 2))  # each unique, no gaps
        assert len({result.position for result in results}) == len(results)
        streams = assert_log_contiguous(engine.store)
        state, version = live_state(engine, ORDERS, "o")
        assert version == 8 * per_thread + 1
        assert state == replay(ORDERS, streams["o"])
        assert sum(item.quantity for item in state.items) == 8 * per_thread + 1


def test_a_generic_counter_aggregate_works_including_commands_that_emit_nothing(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path, deciders=[COUNTER], snapshot_every=2) as engine:
        with pytest.raises(CommandRejected):
            engine.execute(Increment(counter_id="c", by=0))
        assert engine.execute(Increment(counter_id="c", by=5)).version == 1
        reset = engine.execute(Reset(counter_id="c"))
        assert (reset.version, len(reset.events)) == (2, 1)
        nothing = engine.execute(Reset(counter_id="c"))  # already zero: no event
        assert (nothing.version, nothing.events) == (2, ())
        assert engine.execute(Increment(counter_id="c", by=1)).version == 3
        assert engine.store.head() == 3
        state, version = live_state(engine, COUNTER, "c")
        assert (state, version) == (CounterState(exists=True, value=1, resets=1), 3)
    with open_engine(tmp_path, deciders=[COUNTER], snapshot_every=2) as engine:
        assert engine.execute(Increment(counter_id="c", by=1)).version == 4
        state, _ = live_state(engine, COUNTER, "c")
        assert state == CounterState(exists=True, value=2, resets=1)


def test_reactivation_from_a_snapshot_gives_the_state_replaying_all_events_gives(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path, snapshot_every=3) as engine:
        engine.execute(create("o"))
        for i in range(10):
            engine.execute(add("o", f"p{i % 4}", i + 1))
        before, version = live_state(engine, ORDERS, "o")
    with open_engine(tmp_path, snapshot_every=3) as engine:
        snapshot = engine.store.load_snapshot("o", stream_type="order")
        assert snapshot is not None
        assert snapshot.version == 9  # the last multiple of 3 at or below 11
        engine.execute(add("o", "late"))
        after, after_version = live_state(engine, ORDERS, "o")
        everything = engine.store.read_stream("o", stream_type="order")
        assert after_version == version + 1 == len(everything)
        assert after == replay(ORDERS, everything)
        assert replay(ORDERS, everything[:-1]) == before


def test_an_unencodable_state_skips_the_snapshot_and_the_aggregate_lives_on(
    tmp_path: Path,
) -> None:
    big = 2**63  # each event encodes; their sum (the state) does not fit msgpack's 64 bits
    with open_engine(tmp_path, deciders=[COUNTER], snapshot_every=1) as engine:
        engine.execute(Increment(counter_id="c", by=big))
        second = engine.execute(Increment(counter_id="c", by=big), timeout=TIMEOUT)
        assert second.version == 2
        snapshot = engine.store.load_snapshot("c", stream_type="counter")
        assert snapshot is not None
        assert snapshot.version == 1
        state, _ = live_state(engine, COUNTER, "c")
        assert state.value == 2 * big


def test_an_event_the_log_cannot_encode_fails_only_its_command(tmp_path: Path) -> None:
    with open_engine(tmp_path, deciders=[COUNTER]) as engine:
        engine.execute(Increment(counter_id="c", by=1))
        with pytest.raises(CommandRejected):  # InvalidCommand: by does not fit 64 bits
            engine.execute(Increment(counter_id="c", by=2**70), timeout=TIMEOUT)
        assert engine.store.head() == 1
        assert engine.execute(Increment(counter_id="c", by=1)).version == 2
        state, _ = live_state(engine, COUNTER, "c")
        assert state.value == 2


class BuggyCounter(CounterDecider):
    """A counter whose decide raises on by == 13 and whose evolve raises on by == 666."""

    def decide(
        self, state: CounterState, command: Increment | Reset, now: datetime
    ) -> Sequence[msgspec.Struct]:
        if isinstance(command, Increment) and command.by == 13:
            raise ZeroDivisionError("unlucky")
        return super().decide(state, command, now)

    def evolve(self, state: CounterState, event: msgspec.Struct) -> CounterState:
        if getattr(event, "by", 0) == 666:
            raise ValueError("evil")
        return super().evolve(state, event)


def test_a_bug_in_decide_or_evolve_fails_only_that_command(tmp_path: Path) -> None:
    with open_engine(tmp_path, deciders=[BuggyCounter()]) as engine:
        engine.execute(Increment(counter_id="c", by=1))
        with pytest.raises(ZeroDivisionError):
            engine.execute(Increment(counter_id="c", by=13))
        with pytest.raises(ValueError, match="evil"):
            engine.execute(Increment(counter_id="c", by=666))
        assert engine.store.head() == 1
        assert engine.execute(Increment(counter_id="c", by=2)).version == 2


def test_a_duplicate_of_a_command_still_in_flight_gets_the_original_result(
    tmp_path: Path,
) -> None:
    # More commands in flight than the aggregate's memory of recent ids: a duplicate of the
    # oldest must still be answered with the original result, not decided again.
    gate = threading.Event()
    wrappers: list[GatedStore] = []

    def gated(store: Any) -> GatedStore:
        wrappers.append(GatedStore(store, gate))
        return wrappers[0]

    with open_engine(tmp_path, store_wrapper=gated) as engine:
        first = engine.submit(create("o", command_id="first"))
        wait_until(wrappers[0].waiting.is_set)  # the writer holds batch 1 at the gate
        rest = [engine.submit(add("o", f"p{i}")) for i in range(IN_FLIGHT)]
        duplicate = engine.submit(create("o", command_id="first"))
        conflicting = engine.submit(add("o", command_id="first"))
        gate.set()
        original = first.get(timeout=TIMEOUT)
        assert duplicate.get(timeout=TIMEOUT) == original
        assert [f.get(timeout=TIMEOUT).version for f in rest] == list(range(2, IN_FLIGHT + 2))
        with pytest.raises(IdempotencyConflict):
            conflicting.get(timeout=TIMEOUT)
        assert_log_contiguous(engine.store)
        assert engine.store.head() == IN_FLIGHT + 1


# ---------------------------------------------------------------- the concurrency rule

ORDER_IDS = ("a", "b", "c")

order_commands = st.one_of(
    st.builds(create, st.sampled_from(ORDER_IDS)),
    st.builds(
        add,
        st.sampled_from(ORDER_IDS),
        st.sampled_from(("apple", "pear", "plum")),
        st.integers(1, 3),
    ),
    st.builds(
        remove,
        st.sampled_from(ORDER_IDS),
        st.sampled_from(("apple", "pear")),
    ),
    st.builds(ship, st.sampled_from(ORDER_IDS)),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.lists(order_commands, max_size=12), min_size=2, max_size=4))
def test_any_interleaving_keeps_versions_and_positions_contiguous_and_state_equal_to_replay(
    scripts: list[list[OrderCommand]],
) -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        open_engine(Path(directory), max_batch=3, snapshot_every=2) as engine,
    ):
        start = threading.Barrier(len(scripts))
        accepted: list[Any] = []
        unexpected: list[BaseException] = []

        def run(script: list[OrderCommand]) -> None:
            try:
                start.wait(TIMEOUT)
            except threading.BrokenBarrierError as error:
                unexpected.append(error)
                return
            for command in script:
                try:
                    accepted.append(engine.execute(command, timeout=TIMEOUT))
                except CommandRejected:
                    continue
                except Exception as error:
                    if not isinstance(error, AggregateNotFound):
                        unexpected.append(error)

        threads = [threading.Thread(target=run, args=(script,)) for script in scripts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 2)
        assert not unexpected
        streams = assert_log_contiguous(engine.store)
        assert engine.store.head() == len(accepted)
        for order_id, events in streams.items():
            mine = sorted(r.version for r in accepted if r.aggregate_id == order_id)
            assert mine == list(range(1, len(events) + 1))
            state, version = live_state(engine, ORDERS, order_id)
            assert version == len(events)
            assert state == replay(ORDERS, events)


def test_an_aggregate_that_cannot_load_fails_its_commands_and_recovers_later(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path, deciders=[COUNTER]) as engine:
        engine.execute(Increment(counter_id="c", by=1))
    wrappers: list[FlakyReads] = []

    def flaky(store: Any) -> FlakyReads:
        # the activation's read and the first command's retry fail; the next retry succeeds
        wrappers.append(FlakyReads(store, fail_reads={1, 2}))
        return wrappers[0]

    with open_engine(tmp_path, deciders=[COUNTER], store_wrapper=flaky) as engine:
        # its commands fail at once instead of hanging, and each retries the load
        first = engine.submit(Increment(counter_id="c", by=2))
        second = engine.submit(Increment(counter_id="c", by=3))
        with pytest.raises(StorageError, match="InjectedFault") as caught:
            first.get(timeout=TIMEOUT)
        assert caught.value.operation == "load"
        assert second.get(timeout=TIMEOUT).version == 2  # the next command loads again
        assert engine.execute(Increment(counter_id="c", by=4)).version == 3
        state, _ = live_state(engine, COUNTER, "c")
        assert state.value == 8
        assert engine.store.head() == 3


def test_an_aggregate_whose_reload_fails_fails_the_stashed_commands_and_recovers(
    tmp_path: Path,
) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []

    def wrap(store: Any) -> GatedStore:
        # commit 2 fails; the reload after it (read_stream call 2) fails too
        wrappers.append(GatedStore(FlakyReads(FailingStore(store, fail_on={2}), {2}), gate))
        return wrappers[0]

    with open_engine(tmp_path, deciders=[COUNTER], store_wrapper=wrap, max_batch=1) as engine:
        first = engine.submit(Increment(counter_id="c", by=1))
        wait_until(wrappers[0].waiting.is_set)
        futures = [engine.submit(Increment(counter_id="c", by=10)) for _ in range(6)]
        gate.set()
        assert first.get(timeout=TIMEOUT).version == 1
        outcomes: list[Any] = []
        for future in futures:
            try:
                outcomes.append(future.get(timeout=TIMEOUT))
            except (CommitFailed, StorageError) as error:
                outcomes.append(error)
        assert isinstance(outcomes[0], CommitFailed)
        accepted = [o for o in outcomes if not isinstance(o, Exception)]
        assert [r.version for r in accepted] == list(range(2, len(accepted) + 2))
        after = engine.execute(Increment(counter_id="c", by=100))
        assert after.version == len(accepted) + 2
        flaky = wrappers[0].store
        assert isinstance(flaky, FlakyReads)
        assert flaky.reads >= 3  # activation, the failed reload, the retry
        streams = assert_log_contiguous(engine.store)
        state, _ = live_state(engine, COUNTER, "c")
        assert state == replay(COUNTER, streams["c"])
