"""Backpressure: the in-flight gate alone, then through the engine with a slow (gated) store."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_kit import (
    COUNTER,
    TIMEOUT,
    CounterDecider,
    GatedStore,
    Increment,
    assert_log_contiguous,
    open_engine,
)
from structlog.testing import capture_logs
from waiting import wait_until

from actors import CommandResult, CommandTimeout, EngineClosed
from actors._gate import InFlightGate


def test_the_gate_admits_up_to_its_limit_then_times_out() -> None:
    gate = InFlightGate(2)
    assert gate.try_enter()
    assert gate.enter(TIMEOUT)
    assert gate.count == 2
    assert not gate.try_enter()
    assert not gate.enter(0.01)
    gate.leave()
    assert gate.try_enter()
    assert gate.count == 2


def test_a_waiting_caller_proceeds_as_soon_as_a_slot_is_freed() -> None:
    gate = InFlightGate(1)
    assert gate.try_enter()
    admitted = threading.Event()

    def waiter() -> None:
        if gate.enter(TIMEOUT):
            admitted.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not admitted.wait(0.05)  # still blocked while the slot is taken
    gate.leave()
    assert admitted.wait(TIMEOUT)
    thread.join(TIMEOUT)
    assert gate.count == 1


def test_wait_idle_returns_once_everything_left_and_false_on_timeout() -> None:
    gate = InFlightGate(5)
    gate.try_enter()
    assert not gate.wait_idle(0.01)
    threading.Timer(0.01, gate.leave).start()
    assert gate.wait_idle(TIMEOUT)
    assert gate.wait_idle(0)


def test_a_closed_gate_refuses_everyone_but_lets_the_admitted_leave() -> None:
    gate = InFlightGate(1)
    assert gate.try_enter()
    gate.close()
    with pytest.raises(EngineClosed):
        gate.try_enter()
    with pytest.raises(EngineClosed):
        gate.enter(TIMEOUT)
    gate.leave()
    assert gate.wait_idle(0)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        InFlightGate(0)


def _gated(gate: threading.Event, wrappers: list[GatedStore]) -> Any:
    def wrap(store: Any) -> GatedStore:
        wrappers.append(GatedStore(store, gate))
        return wrappers[0]

    return wrap


def test_submit_blocks_when_too_many_are_in_flight_then_times_out(tmp_path: Path) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []
    with open_engine(
        tmp_path, deciders=[COUNTER], max_in_flight=4, store_wrapper=_gated(gate, wrappers)
    ) as engine:
        futures = [engine.submit(Increment(counter_id=f"c{i}")) for i in range(4)]
        assert engine.status().in_flight == 4
        with pytest.raises(CommandTimeout) as caught:
            engine.submit(Increment(counter_id="late", command_id="late"), timeout=0.05)
        assert caught.value.command_id == "late"
        with pytest.raises(CommandTimeout):
            asyncio.run(engine.execute_async(Increment(counter_id="late"), timeout=0.05))
        gate.set()
        assert [f.get(timeout=TIMEOUT).position for f in futures] == [1, 2, 3, 4]
        wait_until(lambda: engine.status().in_flight == 0)
        assert engine.execute(Increment(counter_id="late", command_id="late")).version == 1
        assert engine.store.head() == 5


def test_a_blocked_submit_proceeds_when_the_store_catches_up(tmp_path: Path) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []
    with open_engine(
        tmp_path, deciders=[COUNTER], max_in_flight=3, store_wrapper=_gated(gate, wrappers)
    ) as engine:
        futures = [engine.submit(Increment(counter_id="c")) for _ in range(3)]
        outcome: list[Any] = []

        def blocked_caller() -> None:
            try:
                outcome.append(engine.execute(Increment(counter_id="c"), timeout=TIMEOUT))
            except BaseException as error:
                outcome.append(error)

        thread = threading.Thread(target=blocked_caller)
        thread.start()
        wait_until(wrappers[0].waiting.is_set)
        assert not outcome  # held back while the store is stuck
        gate.set()
        thread.join(TIMEOUT)
        assert [f.get(timeout=TIMEOUT).version for f in futures] == [1, 2, 3]
        assert len(outcome) == 1
        assert isinstance(outcome[0], CommandResult)
        assert outcome[0].version == 4
        assert_log_contiguous(engine.store)


class SlowRoutingCounter(CounterDecider):
    """Blocks in ``aggregate_id`` for the counter "slow": holds a caller inside ``submit``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def aggregate_id(self, command: Any) -> str:
        if command.counter_id == "slow":
            self.entered.set()
            self.release.wait(TIMEOUT)
        return str(command.counter_id)


def test_a_command_caught_between_the_closed_check_and_admission_gets_engine_closed(
    tmp_path: Path,
) -> None:
    decider = SlowRoutingCounter()
    outcome: list[Any] = []
    with open_engine(tmp_path, deciders=[decider]) as engine:
        engine.execute(Increment(counter_id="fast"))

        def caller() -> None:
            try:
                outcome.append(engine.execute(Increment(counter_id="slow"), timeout=TIMEOUT))
            except BaseException as error:
                outcome.append(error)

        thread = threading.Thread(target=caller)
        thread.start()
        assert decider.entered.wait(TIMEOUT)  # past the closed check, not yet admitted
        engine.close()
        decider.release.set()
        thread.join(TIMEOUT * 2)
    assert len(outcome) == 1
    assert isinstance(outcome[0], EngineClosed), outcome


def test_an_async_caller_that_gave_up_leaves_no_error_when_its_command_commits_later(
    tmp_path: Path,
) -> None:
    gate = threading.Event()
    wrappers: list[GatedStore] = []
    with open_engine(tmp_path, deciders=[COUNTER], store_wrapper=_gated(gate, wrappers)) as engine:
        with pytest.raises(CommandTimeout):
            asyncio.run(engine.execute_async(Increment(counter_id="c"), timeout=0.05))
        # its event loop is closed now; the commit lands afterwards
        with capture_logs() as logs:
            gate.set()
            wait_until(lambda: engine.status().in_flight == 0)
            assert engine.execute(Increment(counter_id="c")).version == 2
    assert [entry for entry in logs if entry["log_level"] in {"error", "warning"}] == []


def test_a_held_gate_admits_nothing_new_until_let_go() -> None:
    gate = InFlightGate(10)
    assert gate.try_enter()  # admitted before the hold: goes on
    gate.hold(True)  # noqa: FBT003 - the gate's one argument
    assert not gate.try_enter()
    assert not gate.enter(0.05)  # times out while held, with slots free
    entered = threading.Event()

    def waiter() -> None:
        if gate.enter(TIMEOUT):
            entered.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: gate._waiters == 1)
    assert not entered.is_set()
    gate.hold(False)  # noqa: FBT003
    thread.join(TIMEOUT)
    assert entered.is_set()
    assert gate.count == 2


def test_closing_a_held_gate_wakes_its_waiters_with_engine_closed() -> None:
    gate = InFlightGate(10)
    gate.hold(True)  # noqa: FBT003
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            gate.enter(TIMEOUT)
        except EngineClosed as error:
            errors.append(error)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: gate._waiters == 1)
    gate.close()
    thread.join(TIMEOUT)
    assert len(errors) == 1
