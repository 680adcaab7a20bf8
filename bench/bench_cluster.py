"""Throughput of the sharded engine (1, 2, 4 shards) against one plain `Engine`, same run.

Default configuration (the four order views on, durability sync). Every engine gets the same
interleaved order workload, submitted without waiting and then awaited; the figure is commands
per second from the first submit to the last acknowledgement. A cross-shard query
(``SearchOrders``, merged over every shard) is timed against the same query on the plain engine.
Prints a table and writes JSON (``bench/results/cluster.json`` unless ``--json``).

    python bench/bench_cluster.py [--orders N] [--adds N] [--shards 1,2,4] [--json FILE]

Shards are processes, so they escape the GIL: on a 2-core machine 2 shards are expected to
beat one engine (the issue's aim: 1.6x), 4 shards share the same 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from _common import configure_logging, percentiles_us, write_json
from _workload import order_workload

from actors import Engine
from cluster import ShardedEngine
from views.orders import SearchOrders


def _run_plain(root: Path, commands: Sequence[Any], queries: int) -> dict[str, float]:
    with Engine.open(root / "plain") as engine:
        began = time.perf_counter()
        futures = [engine.submit(command) for command in commands]
        for future in futures:
            future.get(timeout=120)
        seconds = time.perf_counter() - began
        engine.wait_for_views()
        latencies = []
        for _ in range(queries):
            start = time.perf_counter()
            engine.query(SearchOrders(page_size=20))
            latencies.append(time.perf_counter() - start)
    return {"commands_per_s": len(commands) / seconds, **_p50(latencies)}


def _run_sharded(
    root: Path, shards: int, commands: Sequence[Any], queries: int
) -> dict[str, float]:
    with ShardedEngine.open(root / f"sharded-{shards}", shards=shards) as engine:
        began = time.perf_counter()
        futures = [engine.submit(command) for command in commands]
        for future in futures:
            future.get(timeout=120)
        seconds = time.perf_counter() - began
        engine.query(SearchOrders(), after=engine.heads(), timeout=60)
        latencies = []
        for _ in range(queries):
            start = time.perf_counter()
            engine.query(SearchOrders(page_size=20))
            latencies.append(time.perf_counter() - start)
    return {"commands_per_s": len(commands) / seconds, **_p50(latencies)}


def _p50(latencies: Sequence[float]) -> dict[str, float]:
    return {"query_p50_us": percentiles_us(latencies)["p50_us"]} if latencies else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--adds", type=int, default=8)
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    configure_logging()
    commands = order_workload(args.orders, args.adds)
    counts = [int(text) for text in args.shards.split(",")]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            rows["engine"] = _run_plain(root, commands, args.queries)
            for count in counts:
                rows[f"{count} shards"] = _run_sharded(root, count, commands, args.queries)
    finally:
        ray.shutdown()
    base = rows["engine"]["commands_per_s"]
    print(f"{len(commands)} commands, {args.orders} orders, views on, durability sync")
    print(f"{'engine':<10} {'commands/s':>12} {'x engine':>9} {'query p50 us':>13}")
    for name, row in rows.items():
        print(
            f"{name:<10} {row['commands_per_s']:>12,.0f} {row['commands_per_s'] / base:>9.2f} "
            f"{row.get('query_p50_us', 0):>13,.0f}"
        )
    target = write_json(
        {"commands": len(commands), "orders": args.orders, "rows": rows},
        args.json,
        "cluster.json",
    )
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
