import os
import signal
import time
from typing import Any

import cluster_kit
import pytest
from cluster_kit import add, create
from waiting import wait_until

from actors import CommandResult
from cluster import ShardedEngine, ShardUnavailable
from domain.errors import EngineError
from views.orders import GetOrderById, GetOrderStats

ray_local = cluster_kit.ray_local
sharded = cluster_kit.sharded


def _orders_on(engine: ShardedEngine, shard: int, prefix: str, count: int) -> list[str]:
    ids = (f"{prefix}-{i}" for i in range(10_000))
    return [order_id for order_id in ids if engine.shard_of(order_id) == shard][:count]


def _outcome(future: Any) -> CommandResult | ShardUnavailable:
    try:
        result: CommandResult = future.get(timeout=20)
    except ShardUnavailable as error:
        return error
    return result


def _resend_until_answered(
    engine: ShardedEngine, commands: list[Any], timeout: float
) -> list[CommandResult]:
    deadline = time.monotonic() + timeout
    answers: dict[int, CommandResult] = {}
    while len(answers) < len(commands):
        assert time.monotonic() < deadline, "the resends were not all answered in time"
        pending = [i for i in range(len(commands)) if i not in answers]
        futures = [(i, engine.submit(commands[i])) for i in pending]
        for i, future in futures:
            outcome = _outcome(future)
            if isinstance(outcome, CommandResult):
                answers[i] = outcome
    return [answers[i] for i in range(len(commands))]


def _new_pid(engine: ShardedEngine, shard: int, old: int) -> bool:
    try:
        return engine.shard_pids(timeout=1.0)[shard] != old
    except ShardUnavailable:
        return False


def test_kill_9_of_a_shard_loses_nothing_acknowledged_and_a_resend_applies_once(
    sharded: ShardedEngine,
) -> None:
    victims = _orders_on(sharded, 0, "victim", 10)
    bystander = _orders_on(sharded, 1, "bystander", 1)[0]
    for order_id in [*victims, bystander]:
        sharded.execute(create(order_id))
    old_pid = sharded.shard_pids()[0]
    # 300 lines per order (an order holds at most 500).
    commands = [add(victims[n % 10], f"q-{n}") for n in range(3000)]
    futures = [sharded.submit(command) for command in commands]
    os.kill(old_pid, signal.SIGKILL)
    # The other shard keeps serving while shard 0 is down.
    assert sharded.execute(add(bystander), timeout=5).shard == 1
    outcomes = [_outcome(future) for future in futures]
    acknowledged = {
        c.command_id: o
        for c, o in zip(commands, outcomes, strict=True)
        if not isinstance(o, ShardUnavailable)
    }
    unavailable = [o for o in outcomes if isinstance(o, ShardUnavailable)]
    assert unavailable, "the kill came after every command had committed: nothing was tested"
    assert all(error.shard == 0 for error in unavailable)

    wait_until(lambda: _new_pid(sharded, 0, old_pid), 30, "shard 0's restart")
    # Every command is re-sent with its command_id: applied at most once, acknowledged kept.
    resent = _resend_until_answered(sharded, commands, timeout=30)
    for command, result in zip(commands, resent, strict=True):
        if command.command_id in acknowledged:
            assert result == acknowledged[command.command_id]
    for order_id in victims:
        versions = sorted(r.version for r in resent if r.aggregate_id == order_id)
        assert versions == list(range(2, 302))
        view = sharded.query(GetOrderById(order_id), after=sharded.heads())
        assert view is not None
        assert view.item_count == 301
    assert sharded.heads()[0] == 3010


def test_a_stopped_shard_fails_calls_in_time_then_serves_again(sharded: ShardedEngine) -> None:
    frozen_order = _orders_on(sharded, 1, "frozen", 1)[0]
    live_order = _orders_on(sharded, 0, "live", 1)[0]
    sharded.execute(create(frozen_order))
    sharded.execute(create(live_order))
    pid = sharded.shard_pids()[1]
    command = add(frozen_order)
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises(ShardUnavailable) as caught:
            sharded.query(GetOrderStats(), timeout=0.5)
        assert caught.value.shard == 1
        with pytest.raises(ShardUnavailable) as caught:
            sharded.execute(command, timeout=0.5)
        assert caught.value.shard == 1
        with pytest.raises(ShardUnavailable):
            sharded.status(timeout=0.5)
        assert time.monotonic() - began < 3.0
        # The shard that is up answers what is its own.
        assert sharded.query(GetOrderById(live_order), timeout=2) is not None
    finally:
        os.kill(pid, signal.SIGCONT)
    # The command was queued, not lost: the resend answers with its one result.
    result = sharded.execute(command, timeout=10)
    assert result.version == 2
    assert sharded.execute(command, timeout=10) == result
    assert sharded.shard_pids()[1] == pid


def test_opening_a_directory_another_sharded_engine_holds_is_a_typed_error(
    sharded: ShardedEngine,
) -> None:
    began = time.monotonic()
    with pytest.raises(EngineError) as caught:
        ShardedEngine.open(sharded.path, shards=2, start_timeout=30)
    assert "in use by process" in str(caught.value)
    assert time.monotonic() - began < 30
    assert sharded.heads() == {0: 0, 1: 0}
