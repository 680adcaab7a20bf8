"""Retention in a running engine: the idempotency window, and snapshots that keep tidy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from engine_kit import (
    COUNTER,
    CounterDecider,
    Increment,
    Incremented,
    open_engine,
)
from structlog.testing import capture_logs
from waiting import wait_until

from actors import Engine, RecentCommands
from actors._retention import Retention
from store import Codec, EventStore, Snapshot, StreamAppend
from store._retention import PruneResult

T = TypeVar("T")

HOUR = timedelta(hours=1)


class Clock:
    """A clock the test moves by hand (the engine stamps events and prunes with it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self._now += by


def counter_of(engine: Engine, counter_id: str) -> int:
    """Return the counter's value as its aggregate sees it (the log replayed)."""
    return sum(
        event.event.by  # type: ignore[attr-defined]
        for batch in engine.store.read_all()
        for event in batch
        if event.stream_id == counter_id and event.tag == "test.CounterIncremented"
    )


def test_a_retry_inside_the_window_returns_the_original_result(tmp_path: Path) -> None:
    clock = Clock()
    with open_engine(
        tmp_path, deciders=[COUNTER], clock=clock, idempotency_window=HOUR, idle_timeout=None
    ) as engine:
        command = Increment(counter_id="a", by=5)
        first = engine.execute(command)
        clock.advance(timedelta(minutes=59))
        engine.execute(Increment(counter_id="b"))  # moves time on in the log too
        assert engine.execute(command) == first
        assert counter_of(engine, "a") == 5
        assert engine.status().idempotency_entries == 2


def test_a_retry_after_the_window_is_pruned_is_applied_as_new(tmp_path: Path) -> None:
    clock = Clock()
    with open_engine(
        tmp_path, deciders=[COUNTER], clock=clock, idempotency_window=HOUR, idle_timeout=None
    ) as engine:
        command = Increment(counter_id="a", by=5)
        first = engine.execute(command)
        clock.advance(HOUR + timedelta(seconds=1))
        young = engine.execute(Increment(counter_id="b"))
        wait_until(lambda: engine.status().idempotency_entries == 1)
        assert engine.store.lookup_command(command.command_id) is None
        again = engine.execute(command)
        assert again.version == first.version + 1
        assert again.position > young.position
        assert counter_of(engine, "a") == 10
        status = engine.status()
        # The oldest kept command is the young one: its event's time, in Unix seconds.
        assert status.idempotency_oldest == clock().timestamp()
        assert status.idempotency_entries == 2


def test_a_count_window_keeps_the_most_recent_commands(tmp_path: Path) -> None:
    with open_engine(
        tmp_path, deciders=[COUNTER], idempotency_window=RecentCommands(3), idle_timeout=None
    ) as engine:
        commands = [Increment(counter_id=f"c{index}") for index in range(10)]
        results = [engine.execute(command) for command in commands]
        wait_until(lambda: engine.status().idempotency_entries == 3)
        assert [engine.store.lookup_command(c.command_id) is not None for c in commands] == [
            False
        ] * 7 + [True] * 3
        assert engine.execute(commands[-1]) == results[-1]
        assert engine.execute(commands[0]).version == 2  # forgotten: a new command


def test_pruning_resumes_from_its_cursor_after_a_reopen(tmp_path: Path) -> None:
    commands = [Increment(counter_id="a") for _ in range(5)]
    with open_engine(
        tmp_path, deciders=[COUNTER], idempotency_window=RecentCommands(2), idle_timeout=None
    ) as engine:
        for command in commands:
            engine.execute(command)
        wait_until(lambda: engine.status().idempotency_entries == 2)
    with open_engine(tmp_path, deciders=[COUNTER], idempotency_window=None) as engine:
        assert engine.store.idempotency_stats().cursor == 3
        assert engine.status().idempotency_entries == 2
        assert engine.execute(commands[0]).version == 6  # still forgotten after the reopen
        assert engine.execute(commands[4]).version == 5  # still answered from the table


def _new_counter(index: int, timestamp: int = 0) -> StreamAppend:
    """Counter ``s<index>``'s first event, by command ``c<index>`` (stamped at commit if 0)."""
    return StreamAppend(
        stream_id=f"s{index}",
        stream_type="counter",
        expected_version=0,
        events=[Incremented(counter_id=f"s{index}", by=1)],
        command_id=f"c{index}",
        timestamp=timestamp,
    )


def test_pruning_runs_in_bounded_batches(tmp_path: Path) -> None:
    with EventStore.open(tmp_path, codec=Codec(COUNTER.event_types)) as store:
        for start in range(0, 250, 50):
            store.append_batch([_new_counter(index) for index in range(start, start + 50)])
        retention = Retention(
            store, window=RecentCommands(0), clock=Clock(), schemas={}, batch=40, budget=60.0
        )
        with capture_logs() as logs:
            retention.run_round()
    batches = [entry["rows"] for entry in logs if entry["event"] == "idempotency_pruned"]
    assert batches == [40] * 6 + [10]
    assert retention.pruned == 250


def test_a_duration_window_takes_no_write_transaction_until_its_oldest_command_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    with EventStore.open(tmp_path, codec=Codec(COUNTER.event_types)) as store:
        stamp = int(clock().timestamp()) * 10**9
        store.append_batch([_new_counter(index, stamp + index) for index in range(5)])
        calls = _record_prunes(store, monkeypatch, lambda result: result.edge_ns)
        retention = Retention(store, window=3600.0, clock=clock, schemas={})
        retention.run_round()
        assert calls == [stamp]  # stopped at the oldest command: its timestamp is the edge
        clock.advance(timedelta(minutes=59))
        for _ in range(3):
            retention.run_round()
        assert calls == [stamp]  # inside the window: no write transaction at all
        clock.advance(timedelta(minutes=1))  # the cutoff is now exactly the oldest stamp
        retention.run_round()
        assert len(calls) == 1
        clock.advance(timedelta(microseconds=1))  # 1 us past: the first 1,000 events are due
        retention.run_round()
        assert calls[1:] == [None]
        assert retention.pruned == 5
        assert store.lookup_command("c0") is None
        assert store.lookup_command("c4") is None


def _record_prunes(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, field: Callable[[PruneResult], T]
) -> list[T]:
    """Patch ``store.prune_commands`` to record ``field`` of each call's result."""
    calls: list[T] = []
    real = store.prune_commands

    def counted(**kwargs: Any) -> PruneResult:
        result = real(**kwargs)
        calls.append(field(result))
        return result

    monkeypatch.setattr(store, "prune_commands", counted)
    return calls


@pytest.mark.parametrize("window", [RecentCommands(3), 60.0], ids=["count", "duration"])
def test_nothing_left_to_prune_takes_no_write_transaction_until_a_command_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: float | RecentCommands
) -> None:
    # Count window: down to its size. Duration window: every command pruned (all are older).
    clock = Clock()
    with EventStore.open(tmp_path, codec=Codec(COUNTER.event_types)) as store:
        store.append_batch([_new_counter(index, 1) for index in range(5)])
        calls = _record_prunes(store, monkeypatch, lambda result: result.pruned)
        retention = Retention(store, window=window, clock=clock, schemas={})
        retention.run_round()
        kept = 3 if isinstance(window, RecentCommands) else 0
        assert calls == [5 - kept]
        for _ in range(3):
            clock.advance(timedelta(hours=1))  # time alone makes nothing more due
            retention.run_round()
        assert calls == [5 - kept]  # no write transaction at all
        store.append_batch([_new_counter(5, 1)])
        retention.run_round()
        assert calls == [5 - kept, 1]  # a new command: pruned at the next round
        assert retention.pruned == 6 - kept
        assert store.idempotency_stats().entries == kept


class CounterV2(CounterDecider):
    """The counter after a change of its state's shape: older snapshots no longer fit."""

    state_schema_version: int = 2


def test_a_stream_keeps_one_snapshot_however_many_it_took(tmp_path: Path) -> None:
    with open_engine(tmp_path, deciders=[COUNTER], snapshot_every=2) as engine:
        for _ in range(20):
            engine.execute(Increment(counter_id="a"))
            engine.execute(Increment(counter_id="b"))
        assert engine.store.snapshot_count() == 2
        snapshot = engine.store.load_snapshot("a", stream_type="counter")
        assert snapshot is not None
        assert snapshot.version == 20


def test_snapshots_of_an_old_state_schema_are_dropped_after_open(tmp_path: Path) -> None:
    with open_engine(tmp_path, deciders=[COUNTER], snapshot_every=2) as engine:
        for index in range(30):
            engine.execute(Increment(counter_id=f"c{index}"))
            engine.execute(Increment(counter_id=f"c{index}"))
        # A snapshot of a type this engine does not run stays (another configuration may).
        engine.store.save_snapshot(Snapshot("z", "other", 1, 1, b"state"))
        assert engine.store.snapshot_count() == 31
    with open_engine(tmp_path, deciders=[CounterV2()], snapshot_every=2) as engine:
        wait_until(lambda: engine.store.snapshot_count() == 1)
        assert engine.store.load_snapshot("z", stream_type="other") is not None
        # The aggregates replay their streams and go on; new snapshots have the new schema.
        result = engine.execute(Increment(counter_id="c0", by=3))
        assert result.version == 3
        assert counter_of(engine, "c0") == 5
        engine.execute(Increment(counter_id="c0"))
        snapshot = engine.store.load_snapshot("c0", stream_type="counter")
        assert snapshot is not None
        assert (snapshot.version, snapshot.schema_version) == (4, 2)
