"""The log writer: group commit, commit failures (through a fault seam), duplicates in a batch."""

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
    assert_log_contiguous,
    create,
    live_state,
    open_engine,
    replay,
)
from structlog.testing import capture_logs
from waiting import wait_until

from actors import CommandResult, CommitFailed, IdempotencyConflict
from actors._messages import Resync
from domain.orders import ORDERS


def _writer(engine: Any) -> Any:
    return engine._writer.proxy()


def _wait_queued(engine: Any, count: int) -> None:
    """Wait until ``count`` appends wait in the writer's inbox (it is held at the gate)."""
    wait_until(lambda: engine._writer.actor_inbox.qsize() >= count)


def test_a_failed_commit_fails_its_callers_and_the_engine_keeps_working(tmp_path: Path) -> None:
    wrappers: list[FailingStore] = []

    def failing(store: Any) -> FailingStore:
        wrappers.append(FailingStore(store, fail_on={3}))
        return wrappers[0]

    with open_engine(tmp_path, store_wrapper=failing, snapshot_every=2) as engine:
        engine.execute(create("o"))
        engine.execute(add("o", "pear"))
        with capture_logs() as logs, pytest.raises(CommitFailed):
            engine.execute(add("o", "plum", command_id="lost"))
        assert [entry["event"] for entry in logs] == ["commit_failed"]
        assert logs[0]["log_level"] == "error"
        assert engine.store.head() == 2
        stream = engine.store.read_stream("o", stream_type="order")
        assert [e.version for e in stream] == [1, 2]  # nothing partial
        assert engine.store.lookup_command("lost") is None
        # the aggregate reloaded: its versions continue from the log
        assert engine.execute(add("o", "kiwi")).version == 3
        # a retry of the failed command is a new command, not a duplicate
        assert engine.execute(add("o", "plum", command_id="lost")).version == 4
        events = engine.store.read_stream("o", stream_type="order")
        state, version = live_state(engine, ORDERS, "o")
        assert version == 4
        assert state == replay(ORDERS, events)
        assert [item.product_id for item in state.items] == ["apple", "pear", "kiwi", "plum"]
        assert_log_contiguous(engine.store)
    with open_engine(tmp_path) as engine:  # and from the log after a restart
        assert engine.execute(add("o", "fig")).version == 5


def test_a_retry_sent_the_instant_a_commit_fails_is_decided_on_the_reloaded_state(
    tmp_path: Path,
) -> None:
    # The retry is submitted from the failed future's own callback, in the writer's thread, at
    # the earliest moment any caller can learn of the failure. The aggregate had evolved to
    # "order exists" before the commit failed: unless it was told to reload *before* its callers
    # were failed, the retry was decided on that state and rejected as order_exists (seen as a
    # rare flake of the HTTP API's 503-then-retry test).
    wrappers: list[FailingStore] = []

    def failing(store: Any) -> FailingStore:
        wrappers.append(FailingStore(store, fail_on={1}))
        return wrappers[0]

    with open_engine(tmp_path, store_wrapper=failing) as engine:
        command = create("o", command_id="first-try")
        retries: list[Any] = []
        original = engine.submit(command)
        original.add_done_callback(lambda _: retries.append(engine.submit(command)))
        with pytest.raises(CommitFailed):
            original.get(timeout=TIMEOUT)
        wait_until(lambda: bool(retries))
        assert retries[0].get(timeout=TIMEOUT).version == 1
        assert_log_contiguous(engine.store)


def test_a_failed_commit_fails_every_caller_of_its_batch_and_no_other(tmp_path: Path) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []

    def wrap(store: Any) -> GatedStore:
        # batch 1 is held at the gate while the others queue up behind it; batch 2 fails
        wrappers.append(GatedStore(FailingStore(store, fail_on={2}), gate))
        return wrappers[0]

    with open_engine(tmp_path, deciders=[COUNTER], store_wrapper=wrap) as engine:
        first = engine.submit(Increment(counter_id="first"))
        wait_until(wrappers[0].waiting.is_set)
        futures = [engine.submit(Increment(counter_id=f"c{i}")) for i in range(20)]
        _wait_queued(engine, 20)
        gate.set()
        assert first.get(timeout=TIMEOUT).position == 1
        failing = wrappers[0].store
        assert isinstance(failing, FailingStore)
        wait_until(lambda: bool(failing.failed))
        lost = {append.stream_id for append in failing.failed[0]}
        assert lost == {f"c{i}" for i in range(20)}  # the whole queue drained into batch 2
        for future in futures:
            with pytest.raises(CommitFailed):
                future.get(timeout=TIMEOUT)
        assert engine.store.head() == 1
        results = [engine.execute(Increment(counter_id=f"c{i}")) for i in range(20)]
        assert all(result.version == 1 for result in results)
        assert_log_contiguous(engine.store)


def test_a_failed_commit_with_pipelined_commands_of_one_aggregate_leaves_no_trace(
    tmp_path: Path,
) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []

    def wrap(store: Any) -> GatedStore:
        wrappers.append(GatedStore(FailingStore(store, fail_on={2}), gate))
        return wrappers[0]

    # max_batch=3: the failing batch holds some of the pipelined commands, later ones were
    # decided on top of them and must fail too, until the aggregate has reloaded
    with open_engine(tmp_path, deciders=[COUNTER], store_wrapper=wrap, max_batch=3) as engine:
        first = engine.submit(Increment(counter_id="c", by=1))
        wait_until(wrappers[0].waiting.is_set)
        futures = [engine.submit(Increment(counter_id="c", by=10**i)) for i in range(1, 12)]
        other = engine.submit(Increment(counter_id="other"))
        gate.set()
        assert first.get(timeout=TIMEOUT).version == 1
        outcomes: list[CommandResult | CommitFailed] = []
        for future in futures:
            try:
                outcomes.append(future.get(timeout=TIMEOUT))
            except CommitFailed as error:
                outcomes.append(error)
        assert isinstance(outcomes[0], CommitFailed)  # the failed batch
        assert other.get(timeout=TIMEOUT).version == 1  # another aggregate is unaffected
        accepted = [o for o in outcomes if isinstance(o, CommandResult)]
        # whatever was accepted after the reload continues the log without a gap
        assert [r.version for r in accepted] == list(range(2, len(accepted) + 2))
        streams = assert_log_contiguous(engine.store)
        expected = 1 + sum(
            event.by for r in accepted for event in r.events if isinstance(event, Incremented)
        )
        assert replay(COUNTER, streams["c"]).value == expected
        after = engine.execute(Increment(counter_id="c", by=5))
        assert after.version == len(streams["c"]) + 1
        state, _ = live_state(engine, COUNTER, "c")
        assert state.value == expected + 5


def test_a_duplicate_in_the_same_batch_as_its_original_gets_the_original_result(
    tmp_path: Path,
) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []

    def wrap(store: Any) -> GatedStore:
        wrappers.append(GatedStore(store, gate))
        return wrappers[0]

    with open_engine(tmp_path, deciders=[COUNTER], store_wrapper=wrap) as engine:
        engine.submit(Increment(counter_id="warmup"))
        wait_until(wrappers[0].waiting.is_set)
        original = engine.submit(Increment(counter_id="c", command_id="k"))
        duplicate = engine.submit(Increment(counter_id="c", command_id="k"))
        # the same id on another aggregate, decided by another actor in the same batch
        elsewhere = engine.submit(Increment(counter_id="d", command_id="k"))
        following = engine.submit(Increment(counter_id="c"))
        gate.set()
        result = original.get(timeout=TIMEOUT)
        assert duplicate.get(timeout=TIMEOUT) == result
        with pytest.raises(IdempotencyConflict):
            elsewhere.get(timeout=TIMEOUT)
        assert following.get(timeout=TIMEOUT).version == 2
        assert engine.execute(Increment(counter_id="d")).version == 1  # d reloaded cleanly
        assert engine.store.head() == 4
        assert_log_contiguous(engine.store)


def test_commands_queued_together_are_group_committed_with_one_log_line_per_batch(
    tmp_path: Path,
) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []

    def wrap(store: Any) -> GatedStore:
        wrappers.append(GatedStore(store, gate))
        return wrappers[0]

    with open_engine(tmp_path, deciders=[COUNTER], store_wrapper=wrap, max_batch=50) as engine:
        with capture_logs() as logs:
            engine.submit(Increment(counter_id="warmup"))
            wait_until(wrappers[0].waiting.is_set)
            futures = [engine.submit(Increment(counter_id=f"c{i % 10}")) for i in range(200)]
            _wait_queued(engine, 200)
            gate.set()
            for future in futures:
                future.get(timeout=TIMEOUT)
        writer = _writer(engine)
        batches = writer.batches.get(timeout=TIMEOUT)
        assert writer.commands.get(timeout=TIMEOUT) == 201
    commits = [entry for entry in logs if entry["event"] == "commit"]
    assert len(commits) == batches
    assert batches <= 1 + 200 // 50 + 1  # grouped: not one commit per command
    assert max(entry["commands"] for entry in commits) == 50
    assert [entry["event"] for entry in logs if entry["log_level"] == "debug"] == ["commit"] * len(
        commits
    )


def test_the_writer_survives_messages_for_actors_that_are_gone(tmp_path: Path) -> None:
    with open_engine(tmp_path, idle_timeout=None) as engine:
        engine.execute(create("o"))
        registry = engine._registries[0]
        old = registry._index["o"].ref
        registry.sweep(0.0)
        wait_until(lambda: not old.is_alive())
        # a resync answered after its aggregate stopped, a projector that died
        engine._writer.tell(Resync("o", old, "order"))
        _writer(engine).subscribe(old).get(timeout=TIMEOUT)
        assert engine.execute(add("o", "pear")).version == 2
        assert engine.execute(add("o", "plum")).version == 3
        assert engine._writer.is_alive()
