"""Two Ray nodes on one machine (`ray.cluster_utils.Cluster`): a node lost and found again.

Shard 0 is pinned to the head node and shard 1 to a second node (`shard_resources`). When the
second node goes, shard 1's calls fail with `ShardUnavailable` within their timeout while
shard 0 keeps serving; when a node with the same resource joins again (same machine, so the same
data directory), Ray restarts shard 1 there, and every acknowledged command is still there, a
resend applying nothing twice.

This module needs a Ray of its own: it stops the session's local Ray, if one runs, and starts
it again afterwards for the modules that follow.
"""

import contextlib
import importlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from cluster_kit import add, create
from waiting import wait_until

from actors import CommandResult
from cluster import ShardedEngine, ShardUnavailable
from views.orders import GetOrderById, GetOrderStats

# Ray's cluster_utils is untyped; a typed module may not call it directly.
cluster_utils: Any = importlib.import_module("ray.cluster_utils")

# Quick failure detection: the GCS declares a silent node dead after 3 missed health checks of
# 0.5 s, not the default ~30 s; the timing of a real cluster changes only how long "down" lasts.
SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
PINS = {0: {"node-a": 0.01}, 1: {"node-b": 0.01}}
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def two_nodes() -> Iterator[Any]:
    """A head node (``node-a``) and a second node (``node-b``); this process is the driver."""
    had_ray = ray.is_initialized()
    if had_ray:
        ray.shutdown()
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"node-a": 1},
            "include_dashboard": False,
            "_system_config": SYSTEM_CONFIG,
        },
    )
    try:
        cluster.add_node(num_cpus=1, resources={"node-b": 1})
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_ray:  # as tests/cluster/cluster_kit.py started it
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


def _ids_on(engine: ShardedEngine, shard: int, prefix: str, count: int) -> list[str]:
    ids = (f"{prefix}-{i}" for i in range(10_000))
    return [order_id for order_id in ids if engine.shard_of(order_id) == shard][:count]


def _serves(engine: ShardedEngine, shard: int) -> bool:
    try:
        engine.heads(of=[shard], timeout=1.0)
    except ShardUnavailable:
        return False
    return True


def test_losing_a_node_fails_its_shard_in_time_and_its_return_loses_nothing(
    two_nodes: Any, tmp_path: Path
) -> None:
    with ShardedEngine.open(tmp_path / "sharded", shards=2, shard_resources=PINS) as engine:
        on_a, on_b = _ids_on(engine, 0, "a", 3), _ids_on(engine, 1, "b", 3)
        commands = [create(order_id) for order_id in on_a + on_b]
        commands += [add(order_id) for order_id in on_a + on_b]
        acknowledged: list[tuple[Any, CommandResult]] = [
            (command, engine.execute(command)) for command in commands
        ]
        # A lost machine takes every process on it at once: node b's Ray processes (killed by
        # remove_node) and shard 1's worker (which would otherwise outlive its raylet by ~1 s).
        shard_1_pid = engine.shard_pids()[1]
        (node_b,) = two_nodes.worker_nodes
        two_nodes.remove_node(node_b, allow_graceful=False)
        with contextlib.suppress(ProcessLookupError):
            os.kill(shard_1_pid, signal.SIGKILL)
        began = time.monotonic()

        # Shard 1's calls fail in time with a clear error, whichever call it is.
        late = add(on_b[0], "late")
        with pytest.raises(ShardUnavailable) as caught:
            engine.execute(late, timeout=2.0)
        assert caught.value.shard == 1
        with pytest.raises(ShardUnavailable) as caught:
            engine.query(GetOrderById(on_b[0]), timeout=2.0)
        assert caught.value.shard == 1
        with pytest.raises(ShardUnavailable):  # a query over every shard needs shard 1 too
            engine.query(GetOrderStats(), timeout=2.0)
        assert time.monotonic() - began < 8.0  # each call within its own 2 s, never hanging
        # Shard 0, on the node that stayed, keeps serving: commands and its own reads.
        result = engine.execute(add(on_a[0], "still-up"), timeout=5.0)
        assert result.shard == 0
        assert engine.query(GetOrderById(on_a[0]), after=result, timeout=5.0) is not None

        # The node comes back (same machine: same data directory); Ray restarts shard 1 there.
        two_nodes.add_node(num_cpus=1, resources={"node-b": 1})
        wait_until(lambda: _serves(engine, 1), 60, "shard 1 serving again")

        # Nothing acknowledged is lost, and a resend of any of it applies nothing twice.
        for command, result in acknowledged:
            assert engine.execute(command, timeout=10.0) == result
        # The command that failed may or may not have committed: its resend applies it once.
        assert engine.execute(late, timeout=10.0).version == 3
        heads = engine.heads()
        assert heads == {0: 7, 1: 7}  # per shard: 3 creates, 3 adds, 1 add during the outage
        for order_id in on_a + on_b:
            view = engine.query(GetOrderById(order_id), after=heads, timeout=10.0)
            assert view is not None
            assert view.item_count == (3 if order_id in {on_a[0], on_b[0]} else 2)
