"""Activation, passivation (idle timeout and LRU cap), reactivation, and their races."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_kit import (
    COUNTER,
    TIMEOUT,
    GatedStore,
    Increment,
    Incremented,
    add,
    assert_log_contiguous,
    create,
    live_state,
    open_engine,
    replay,
)
from waiting import wait_until

import actors._registry as registry_module
from actors import CommandResult, Engine, EngineClosed
from actors._registry import AggregateRegistry
from domain.orders import ORDERS


def _registry(engine: Engine, decider: Any = ORDERS) -> AggregateRegistry:
    return next(r for r in engine._registries if r.decider is decider)


def test_twenty_thousand_aggregates_live_on_a_small_bounded_number_of_threads(
    tmp_path: Path,
) -> None:
    baseline = threading.active_count()
    peak = baseline
    with open_engine(tmp_path, deciders=[COUNTER], workers=2) as engine:
        futures = []
        for i in range(20_000):
            futures.append(engine.submit(Increment(counter_id=f"c{i}")))
            if i % 1000 == 0:
                peak = max(peak, threading.active_count())
        for future in futures:
            future.get(timeout=TIMEOUT)
        peak = max(peak, threading.active_count())
        assert engine.status().live_aggregates == 20_000
        assert engine.store.head() == 20_000
    # dispatcher workers, writer, projectors/router, housekeeping: a handful, not one per actor
    assert peak - baseline <= 10
    wait_until(lambda: threading.active_count() <= baseline)  # every engine thread ended


def test_idle_aggregates_are_passivated_and_reactivate_with_the_same_state(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path, idle_timeout=0.05, snapshot_every=2) as engine:
        for i in range(5):
            engine.execute(create(f"o{i}"))
            for j in range(i + 2):
                engine.execute(add(f"o{i}", f"p{j}", j + 1))
        before = {f"o{i}": live_state(engine, ORDERS, f"o{i}") for i in range(5)}
        wait_until(lambda: engine.status().live_aggregates == 0)
        assert _registry(engine).passivations >= 5
        for order_id, (state, version) in before.items():
            assert engine.store.load_snapshot(order_id, stream_type="order") is not None
            result = engine.execute(add(order_id, "late"))
            assert result.version == version + 1
            after, _ = live_state(engine, ORDERS, order_id)
            events = engine.store.read_stream(order_id, stream_type="order")
            assert after == replay(ORDERS, events)
            assert replay(ORDERS, events[:-1]) == state
        assert_log_contiguous(engine.store)


def test_the_lru_cap_passivates_the_least_recently_used_aggregates(tmp_path: Path) -> None:
    with open_engine(tmp_path, max_live_aggregates=10, snapshot_every=3) as engine:
        for i in range(100):
            engine.execute(create(f"o{i}"))
        wait_until(lambda: engine.status().live_aggregates <= 10)
        registry = _registry(engine)
        assert registry.passivations >= 90
        assert "o99" in registry._index  # the most recent stay
        for i in range(100):
            for j in range(4):
                assert engine.execute(add(f"o{i}", f"p{j}")).version == j + 2
        wait_until(lambda: engine.status().live_aggregates <= 10)
        streams = assert_log_contiguous(engine.store)
        for order_id, events in streams.items():
            assert len(events) == 5
            if order_id in registry._index:
                state, _ = live_state(engine, ORDERS, order_id)
                assert state == replay(ORDERS, events)


def test_concurrent_activations_keep_the_live_set_near_the_cap_from_both_sides(
    tmp_path: Path,
) -> None:
    cap = 40
    with open_engine(tmp_path, max_live_aggregates=cap, idle_timeout=None) as engine:
        registry = _registry(engine)

        def activate(thread: int) -> None:
            futures = [engine.submit(create(f"t{thread}-{i}")) for i in range(150)]
            for future in futures:
                future.get(timeout=30)

        threads = [threading.Thread(target=activate, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        # Refusals (appends still in flight) are asked again by housekeeping.
        wait_until(lambda: len(registry) <= cap and registry._asked == 0)
        live = len(registry)
        # Counting actors already asked again (the old bug) evicted far below the cap.
        assert cap - 4 <= live <= cap + 4, live
        assert registry.activations == 600


def test_actors_asked_to_passivate_leave_the_lru_index_so_activations_never_walk_them(
    tmp_path: Path,
) -> None:
    # A burst of activations far over the cap: asked actors retire only when a worker gets to
    # their Passivate, so thousands can be pending at once. They must not stay in the LRU index
    # (every activation over the cap scanned it from its LRU end: 1,480 entries per activation
    # here, and half the soak's throughput past the cap).
    cap = 10
    with open_engine(
        tmp_path, deciders=[COUNTER], max_live_aggregates=cap, idle_timeout=None
    ) as engine:
        registry = _registry(engine, COUNTER)
        futures = []
        for i in range(3000):
            futures.append(engine.submit(Increment(counter_id=f"c-{i}", by=1)))
            assert len(registry._index) <= cap  # what an activation scans: never the asked
        for future in futures:
            future.get(timeout=TIMEOUT)
        wait_until(lambda: len(registry) <= cap and registry._asked == 0)
        assert registry.activations == 3000
        assert registry.passivations >= 3000 - cap


def test_tune_gc_false_never_freezes_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "_FREEZE_EVERY", 20)  # the threshold, not the code
    gc.unfreeze()
    with open_engine(tmp_path, tune_gc=False, max_live_aggregates=10, idle_timeout=None) as engine:
        registry = _registry(engine)
        futures = [engine.submit(create(f"g{i}")) for i in range(200)]
        for future in futures:
            future.get(timeout=30)
        wait_until(lambda: registry.passivations >= 100)
        assert gc.get_freeze_count() == 0
    with open_engine(tmp_path / "tuned", max_live_aggregates=10, idle_timeout=None) as engine:
        registry = _registry(engine)
        for i in range(25):  # 20 activations freeze; fewer than 20 passivations unfreeze
            engine.execute(create(f"h{i}"))
        assert gc.get_freeze_count() > 0  # the same run with tuning on does freeze
    gc.unfreeze()


def test_an_aggregate_with_commands_in_flight_refuses_to_passivate(tmp_path: Path) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []

    def gated(store: Any) -> GatedStore:
        wrappers.append(GatedStore(store, gate))
        return wrappers[0]

    with open_engine(tmp_path, store_wrapper=gated, idle_timeout=None) as engine:
        registry = _registry(engine)
        pending = [engine.submit(create("o", command_id="c1"))]
        wait_until(wrappers[0].waiting.is_set)
        pending += [engine.submit(add("o", f"p{i}")) for i in range(5)]
        assert registry.sweep(0.0) == 1  # asked while its commits are held at the gate
        entry = registry._leaving["o"]  # asked: out of the LRU index until it answers
        entry.ref.ask("barrier", timeout=TIMEOUT)  # it has handled the Passivate by now
        assert "o" in registry._index  # it refused: back in the index, at the LRU end
        assert "o" not in registry._leaving
        assert next(iter(registry._index)) == "o"
        gate.set()
        results = [future.get(timeout=TIMEOUT) for future in pending]
        assert [result.version for result in results] == [1, 2, 3, 4, 5, 6]
        assert registry.sweep(0.0) == 1
        wait_until(lambda: len(registry) == 0)
        # reactivated from the log: a duplicate gets its original result, versions continue
        assert engine.execute(create("o", command_id="c1")) == results[0]
        assert engine.execute(add("o", "late")).version == 7
        assert_log_contiguous(engine.store)


def test_commands_racing_with_passivation_of_their_aggregate_are_never_lost_or_reordered(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path, deciders=[COUNTER], idle_timeout=None, snapshot_every=7) as engine:
        registry = _registry(engine, COUNTER)
        stop = threading.Event()
        sweeps = 0

        def passivate_constantly() -> None:
            nonlocal sweeps
            # A short pause between sweeps only throttles the spin (no synchronisation here).
            while not stop.wait(0.0002):
                sweeps += registry.sweep(0.0)

        sweeper = threading.Thread(target=passivate_constantly)
        sweeper.start()
        results: dict[str, list[CommandResult]] = {"a": [], "b": []}
        try:
            for i in range(200):
                for counter_id, futures in results.items():
                    futures.append(
                        engine.execute(Increment(counter_id=counter_id, by=i + 1), timeout=TIMEOUT)
                    )
                if i % 50 == 0:  # pipelined bursts, too
                    burst = [engine.submit(Increment(counter_id="a")) for _ in range(20)]
                    results["a"].extend(future.get(timeout=TIMEOUT) for future in burst)
        finally:
            stop.set()
            sweeper.join(TIMEOUT)
        assert sweeps > 0
        assert registry.passivations > 0
        streams = assert_log_contiguous(engine.store)
        for counter_id, accepted in results.items():
            assert [r.version for r in accepted] == list(range(1, len(accepted) + 1))
            assert replay(COUNTER, streams[counter_id]).value == sum(
                event.by for r in accepted for event in r.events if isinstance(event, Incremented)
            )


def test_commands_racing_with_close_either_commit_or_raise_engine_closed(
    tmp_path: Path,
) -> None:
    engine = Engine.open(tmp_path, views=[], durability="async", deciders=[COUNTER])
    outcomes: list[CommandResult | BaseException] = []
    lock = threading.Lock()
    started = threading.Barrier(5)

    def client(n: int) -> None:
        started.wait(TIMEOUT)
        for i in range(2000):
            try:
                result: CommandResult | BaseException = engine.execute(
                    Increment(counter_id=f"c{n}-{i % 7}"), timeout=TIMEOUT
                )
            except BaseException as error:
                result = error
            with lock:
                outcomes.append(result)
            if isinstance(result, BaseException):
                return

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    started.wait(TIMEOUT)
    wait_until(lambda: len(outcomes) >= 100)
    engine.close()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(error, EngineClosed) for error in errors), errors
    acknowledged = [o for o in outcomes if isinstance(o, CommandResult)]
    with open_engine(tmp_path, deciders=[COUNTER]) as reopened:
        assert reopened.store.head() == len(acknowledged)
        for result in acknowledged:
            stream = reopened.store.read_stream(
                result.aggregate_id, result.version, stream_type="counter"
            )
            [event] = stream[:1]
            assert event.position == result.position
        assert_log_contiguous(reopened.store)


def test_an_aggregate_actor_that_died_is_replaced_and_never_fails_other_commands(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path, max_live_aggregates=1, idle_timeout=None) as engine:
        engine.execute(create("a"))
        registry = _registry(engine)
        # an unexpected death (stands in for a crash): the actor stays in the index, dead
        registry._index["a"].ref.stop(timeout=TIMEOUT)
        # over the LRU cap: asking the dead one to passivate must not fail this command
        assert engine.execute(create("b")).version == 1
        assert engine.execute(add("a", "pear")).version == 2  # a fresh actor, from the log
        assert engine.execute(add("b", "pear")).version == 2
        assert_log_contiguous(engine.store)
        wait_until(lambda: engine.status().live_aggregates <= 1)


def test_a_dead_aggregate_actor_found_by_the_idle_sweep_is_forgotten(tmp_path: Path) -> None:
    with open_engine(tmp_path, idle_timeout=None) as engine:
        engine.execute(create("a"))
        registry = _registry(engine)
        registry._index["a"].ref.stop(timeout=TIMEOUT)
        assert registry.sweep(0.0) == 1
        assert engine.status().live_aggregates == 0
        assert engine.execute(add("a", "pear")).version == 2
