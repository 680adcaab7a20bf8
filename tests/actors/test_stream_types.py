"""Streams are keyed by (aggregate type, id): two types may use the same id without sharing.

Before, the store keyed streams by id alone: a counter with an order's id appended to the
order's stream (at the order's next version) and each replayed the other's events.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from engine_kit import (
    COUNTER,
    TIMEOUT,
    FailingStore,
    GatedStore,
    Increment,
    Incremented,
    add,
    all_events,
    create,
    live_state,
    open_engine,
    replay,
)
from waiting import wait_until

from actors import CommitFailed, Engine
from domain.orders import ORDERS, OrderCreated, OrderItemAdded

SHARED = "shared-1"


def _registry_live(engine: Engine, decider: object, aggregate_id: str) -> bool:
    registry = next(r for r in engine._registries if r.decider is decider)
    return aggregate_id in registry._index


def _check_apart(engine: Engine, orders: int, counts: list[int]) -> None:
    """The order and the counter named SHARED have their own events, versions and states."""
    store = engine.store
    order_events = store.read_stream(SHARED, stream_type="order")
    counter_events = store.read_stream(SHARED, stream_type="counter")
    assert [type(e.event) for e in order_events] == [OrderCreated] + [OrderItemAdded] * (orders - 1)
    assert [e.event for e in counter_events] == [
        Incremented(counter_id=SHARED, by=by) for by in counts
    ]
    assert [e.version for e in order_events] == list(range(1, orders + 1))
    assert [e.version for e in counter_events] == list(range(1, len(counts) + 1))
    assert store.stream_version(SHARED, stream_type="order") == orders
    assert store.stream_version(SHARED, stream_type="counter") == len(counts)
    assert {e.stream_type for e in order_events} == {"order"}
    assert {e.stream_type for e in counter_events} == {"counter"}
    # Both are in the one log, each event once.
    shared = [e.position for e in all_events(store) if e.stream_id == SHARED]
    assert sorted(e.position for e in [*order_events, *counter_events]) == shared
    order_state, order_version = live_state(engine, ORDERS, SHARED)
    counter_state, counter_version = live_state(engine, COUNTER, SHARED)
    assert (order_version, counter_version) == (orders, len(counts))
    assert order_state == replay(ORDERS, order_events)
    assert counter_state.value == sum(counts)
    assert counter_state == replay(COUNTER, counter_events)


@pytest.mark.parametrize("snapshot_every", [0, 2], ids=["from-the-log", "from-snapshots"])
def test_two_aggregate_types_with_one_id_never_see_each_others_events(
    tmp_path: Path, snapshot_every: int
) -> None:
    options = {"deciders": [ORDERS, COUNTER], "snapshot_every": snapshot_every}
    with open_engine(tmp_path, max_live_aggregates=1, **options) as engine:
        assert engine.execute(create(SHARED), timeout=TIMEOUT).version == 1
        assert engine.execute(Increment(counter_id=SHARED, by=5), timeout=TIMEOUT).version == 1
        assert engine.execute(add(SHARED, "pear"), timeout=TIMEOUT).version == 2
        counter = engine.execute(
            Increment(counter_id=SHARED, by=7, expected_version=1), timeout=TIMEOUT
        )
        assert counter.version == 2
        assert engine.execute(add(SHARED, "fig", expected_version=2), timeout=TIMEOUT).version == 3
        _check_apart(engine, 3, [5, 7])
        if snapshot_every:
            order_snapshot = engine.store.load_snapshot(SHARED, stream_type="order")
            counter_snapshot = engine.store.load_snapshot(SHARED, stream_type="counter")
            assert order_snapshot is not None
            assert counter_snapshot is not None
            assert (order_snapshot.stream_type, order_snapshot.version) == ("order", 2)
            assert (counter_snapshot.stream_type, counter_snapshot.version) == ("counter", 2)
        else:
            assert engine.store.load_snapshot(SHARED, stream_type="order") is None
        # Passivation: the LRU cap of one per type retires SHARED once another id is used.
        engine.execute(create("other"), timeout=TIMEOUT)
        engine.execute(Increment(counter_id="other"), timeout=TIMEOUT)
        wait_until(
            lambda: (
                not _registry_live(engine, ORDERS, SHARED)
                and not _registry_live(engine, COUNTER, SHARED)
            )
        )
        # Reactivated: each loads its own snapshot and tail, at its own version.
        assert engine.execute(Increment(counter_id=SHARED, by=1), timeout=TIMEOUT).version == 3
        assert engine.execute(add(SHARED, "kiwi"), timeout=TIMEOUT).version == 4
        _check_apart(engine, 4, [5, 7, 1])
    with open_engine(tmp_path, **options) as engine:  # reopened: loaded again from the store
        assert engine.execute(add(SHARED, "lime", expected_version=4), timeout=TIMEOUT).version == 5
        counter = engine.execute(
            Increment(counter_id=SHARED, by=2, expected_version=3), timeout=TIMEOUT
        )
        assert counter.version == 4
        _check_apart(engine, 5, [5, 7, 1, 2])


def test_a_command_id_resent_to_the_other_type_of_the_same_id_answers_from_its_own_stream(
    tmp_path: Path,
) -> None:
    with open_engine(tmp_path, deciders=[ORDERS, COUNTER]) as engine:
        engine.execute(create(SHARED), timeout=TIMEOUT)
        first = engine.execute(
            Increment(counter_id=SHARED, by=3, command_id="inc-1"), timeout=TIMEOUT
        )
    with open_engine(tmp_path, deciders=[ORDERS, COUNTER]) as engine:  # answered from the log
        again = engine.execute(
            Increment(counter_id=SHARED, by=3, command_id="inc-1"), timeout=TIMEOUT
        )
        assert (again.version, again.position) == (first.version, first.position) == (1, 2)
        assert again.events == (Incremented(counter_id=SHARED, by=3),)
        assert engine.store.head() == 2


def test_a_failed_commit_of_both_types_of_one_id_reloads_both(tmp_path: Path) -> None:
    # The writer remembered failed streams, and whom to tell to reload, by id alone: with both
    # types of one id in a failed batch only one was told, and the other's next command was
    # decided on its uncommitted state (a ConcurrencyConflict nobody asked for).
    gate = threading.Event()
    wrappers: list[GatedStore] = []

    def wrap(store: Any) -> GatedStore:
        # batch 2 (held at the gate) fails: it holds the order's and the counter's command
        wrappers.append(GatedStore(FailingStore(store, fail_on={2}), gate))
        return wrappers[0]

    with open_engine(tmp_path, deciders=[ORDERS, COUNTER], store_wrapper=wrap) as engine:
        first = engine.submit(create(SHARED))
        wait_until(wrappers[0].waiting.is_set)
        lost = [engine.submit(add(SHARED, "pear")), engine.submit(Increment(counter_id=SHARED))]
        writer: Any = engine._writer  # both wait in its inbox behind the held batch
        wait_until(lambda: writer.actor_inbox.qsize() >= 2)
        gate.set()
        assert first.get(timeout=TIMEOUT).version == 1
        for future in lost:
            with pytest.raises(CommitFailed):
                future.get(timeout=TIMEOUT)
        assert engine.execute(add(SHARED, "fig"), timeout=TIMEOUT).version == 2
        assert engine.execute(Increment(counter_id=SHARED), timeout=TIMEOUT).version == 1
        _check_apart(engine, 2, [1])
