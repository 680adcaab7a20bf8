import asyncio
import threading
from pathlib import Path

import cluster_kit
import msgspec
import pytest
from cluster_kit import add, create

from cluster import ShardCountMismatch, ShardedEngine
from domain.errors import (
    AggregateNotFound,
    CommandRejected,
    ConcurrencyConflict,
    EngineClosed,
    IdempotencyConflict,
    InvalidCommand,
)
from domain.orders import ShipOrder

ray_local = cluster_kit.ray_local
sharded = cluster_kit.sharded


def test_a_command_runs_on_its_shard_and_says_which(sharded: ShardedEngine) -> None:
    results = [sharded.execute(create(f"o-{i}")) for i in range(8)]
    for i, result in enumerate(results):
        assert result.shard == sharded.shard_of(f"o-{i}")
        assert (result.aggregate_id, result.version) == (f"o-{i}", 1)
    # Positions are per shard: each shard's log counts 1, 2, 3... on its own.
    for shard in range(sharded.shards):
        positions = [r.position for r in results if r.shard == shard]
        assert positions == list(range(1, len(positions) + 1))
    assert sharded.heads() == {
        shard: sum(1 for r in results if r.shard == shard) for shard in range(sharded.shards)
    }


def test_batched_submits_keep_each_aggregates_order(sharded: ShardedEngine) -> None:
    orders = [f"o-{i}" for i in range(6)]
    for order_id in orders:
        sharded.execute(create(order_id))
    futures = [
        (order_id, n, sharded.submit(add(order_id, f"q-{n}")))
        for n in range(150)
        for order_id in orders
    ]
    versions: dict[str, list[int]] = {order_id: [] for order_id in orders}
    for order_id, n, future in futures:
        result = future.get(timeout=30)
        assert result.events[0].product_id == f"q-{n}"  # type: ignore[attr-defined]
        versions[order_id].append(result.version)
    for order_id in orders:
        assert versions[order_id] == list(range(2, 152))


def test_submits_from_many_threads_all_land_in_order_per_thread(sharded: ShardedEngine) -> None:
    errors: list[BaseException] = []

    def run(order_id: str) -> None:
        try:
            sharded.execute(create(order_id))
            futures = [sharded.submit(add(order_id, f"q-{n}")) for n in range(100)]
            assert [f.get(timeout=30).version for f in futures] == list(range(2, 102))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f"t-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def test_a_resend_with_the_same_command_id_applies_once(sharded: ShardedEngine) -> None:
    command = create("o-1")
    first = sharded.execute(command)
    heads = sharded.heads()
    again = sharded.execute(command)
    assert again == first
    assert sharded.heads() == heads
    # Reused for another command of the same aggregate (so the same shard): a conflict. Command
    # ids are checked per shard: a reuse on another aggregate may land on another shard.
    with pytest.raises(IdempotencyConflict):
        sharded.execute(msgspec.structs.replace(add("o-1"), command_id=command.command_id))


def test_the_engines_errors_cross_the_hop_typed(sharded: ShardedEngine) -> None:
    with pytest.raises(AggregateNotFound) as missing:
        sharded.execute(ShipOrder(order_id="nope"))
    assert missing.value.aggregate_id == "nope"
    sharded.execute(create("o-1"))
    with pytest.raises(CommandRejected) as rejected:
        sharded.execute(add("o-1", quantity=0))
    assert rejected.value.aggregate_id == "o-1"
    with pytest.raises(ConcurrencyConflict) as conflict:
        sharded.execute(msgspec.structs.replace(ShipOrder(order_id="o-1"), expected_version=5))
    assert (conflict.value.expected, conflict.value.actual) == (5, 1)
    with pytest.raises(InvalidCommand):
        sharded.submit(object())


def test_execute_async_answers_on_the_loop(sharded: ShardedEngine) -> None:
    result = asyncio.run(sharded.execute_async(create("o-async")))
    assert result.shard == sharded.shard_of("o-async")


def test_a_closed_engine_refuses_every_call(ray_local: None, tmp_path: Path) -> None:
    del ray_local
    engine = ShardedEngine.open(tmp_path, shards=1)
    engine.close()
    engine.close()
    with pytest.raises(EngineClosed):
        engine.execute(create("o-1"))
    with pytest.raises(EngineClosed):
        engine.heads()


def test_reopen_keeps_the_data_and_the_shard_count(ray_local: None, tmp_path: Path) -> None:
    del ray_local
    commands = [create(f"o-{i}") for i in range(6)]
    with ShardedEngine.open(tmp_path, shards=2) as engine:
        first = [engine.execute(command) for command in commands]
        heads = engine.heads()
    with pytest.raises(ShardCountMismatch):
        ShardedEngine.open(tmp_path, shards=3)
    with ShardedEngine.open(tmp_path, shards=2) as engine:
        assert engine.heads() == heads
        # Idempotency survives the restart of every shard.
        assert [engine.execute(command) for command in commands] == first
        assert engine.execute(add("o-0")).version == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["shard-0", "shard-1"]
