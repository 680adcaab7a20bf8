"""Throughput of the sharded engine (1, 2, 4 shards) against one plain `Engine`, same run.

Default configuration (the four order views on, durability sync). Every engine gets the same
interleaved order workload, submitted without waiting and then awaited; the figure is commands
per second from the first submit to the last acknowledgement, the median of ``--rounds`` rounds
(each round a fresh directory per engine, the engines taking turns so that a noisy moment of the
shared machine hits them alike). Query costs, same run: a point query (``GetOrderById``, one
shard), and two cross-shard ones merged over every shard (``SearchOrders`` first page,
``GetOrderStats``), each against the same query on the plain engine.
Prints a table, writes JSON (``bench/results/cluster.json`` unless ``--json``) and a chart
(``docs/cluster.png`` unless ``--chart``).

    python bench/bench_cluster.py [--orders N] [--adds N] [--shards 1,2,4] [--rounds N]

Shards are processes, so they escape the GIL: on a 2-core machine 2 shards are expected to
beat one engine (the issue's aim: 1.6x), 4 shards share the same 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
from _common import (
    BenchResult,
    Figure,
    configure_logging,
    figure,
    median_by_key,
    percentiles_us,
    progress,
    write_json,
)
from _workload import order_workload

from actors import Engine
from cluster import ShardedEngine
from views.orders import GetOrderById, GetOrderStats, SearchOrders

ROOT = Path(__file__).resolve().parent.parent
BENCH = "cluster"
SHARDS_AIM = 1.6  # the aim for 2 shards on this 2-core machine
QUERIES: dict[str, Callable[[str], Any]] = {
    "point": GetOrderById,
    "search": lambda _order: SearchOrders(page_size=20),
    "stats": lambda _order: GetOrderStats(),
}


def _time_queries(
    query: Callable[[Any], Any], order_ids: Sequence[str], count: int
) -> dict[str, float]:
    """Median latency (µs) of each query kind, ``count`` calls each, one at a time."""
    out: dict[str, float] = {}
    for kind, make in QUERIES.items():
        latencies = []
        for n in range(count):
            request = make(order_ids[n % len(order_ids)])
            start = time.perf_counter()
            query(request)
            latencies.append(time.perf_counter() - start)
        out[f"{kind}_p50_us"] = percentiles_us(latencies)["p50_us"]
    return out


def _drive(
    engine: Any, commands: Sequence[Any], queries: int, caught_up: Callable[[], object]
) -> dict[str, float]:
    """Submit every command, await them, wait with ``caught_up``, then time the queries."""
    began = time.perf_counter()
    futures = [engine.submit(command) for command in commands]
    results = [future.get(timeout=300) for future in futures]
    seconds = time.perf_counter() - began
    caught_up()
    ids = sorted({result.aggregate_id for result in results})
    return {"commands_per_s": len(commands) / seconds, **_time_queries(engine.query, ids, queries)}


def _run_plain(path: Path, commands: Sequence[Any], queries: int) -> dict[str, float]:
    with Engine.open(path) as engine:
        return _drive(engine, commands, queries, lambda: engine.wait_for_views(timeout=300))


def _run_sharded(
    path: Path, shards: int, commands: Sequence[Any], queries: int
) -> dict[str, float]:
    with ShardedEngine.open(path, shards=shards) as engine:
        return _drive(
            engine,
            commands,
            queries,
            lambda: engine.query(GetOrderStats(), after=engine.heads(), timeout=300),
        )


def chart(rows: dict[str, dict[str, float]], target: Path) -> Path:
    """Bar chart: commands/s of the plain engine and of each shard count (medians)."""
    import matplotlib as mpl  # noqa: PLC0415 - heavy, and only needed here

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    names = list(rows)
    values = [rows[name]["commands_per_s"] for name in names]
    fig, axis = plt.subplots(figsize=(7, 4))
    bars = axis.bar(names, values, color=["grey"] + ["tab:blue"] * (len(names) - 1))
    for bar, value in zip(bars, values, strict=True):
        axis.annotate(
            f"{value / values[0]:.2f}x",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
        )
    axis.set_ylabel("commands/s (median), views on, durable")
    axis.set_title("Sharded engine on Ray vs one Engine (2 cores)")
    axis.grid(visible=True, axis="y", alpha=0.3)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def measure(
    orders: int, adds: int, counts: Sequence[int], queries: int, rounds: int
) -> dict[str, list[dict[str, float]]]:
    """Run the plain engine and each shard count ``rounds`` times, taking turns; every sample."""
    commands = order_workload(orders, adds)
    samples: dict[str, list[dict[str, float]]] = {"engine": []}
    samples.update({f"{count} shards": [] for count in counts})
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for round_ in range(rounds):
            with tempfile.TemporaryDirectory() as directory:
                root = Path(directory)
                progress(f"cluster round {round_ + 1}/{rounds}: engine")
                samples["engine"].append(_run_plain(root / "plain", commands, queries))
                for count in counts:
                    progress(f"cluster round {round_ + 1}/{rounds}: {count} shards")
                    samples[f"{count} shards"].append(
                        _run_sharded(root / f"sharded-{count}", count, commands, queries)
                    )
    finally:
        ray.shutdown()
    return samples


def run(quick: bool = False) -> BenchResult:
    """The report's entry: 1, 2 and 4 shards against one engine, as figures (medians)."""
    started = time.perf_counter()
    orders, rounds = (300, 1) if quick else (2000, 3)
    samples = measure(orders, 8, [1, 2, 4], 50 if quick else 200, rounds)
    rows = {name: median_by_key(runs) for name, runs in samples.items()}
    base = rows["engine"]
    figures: list[Figure] = []
    for name, row in rows.items():
        if name == "engine":
            continue
        aim = name == "2 shards"
        ratio = row["commands_per_s"] / base["commands_per_s"]
        figures.append(
            figure(
                BENCH,
                f"cmd/s, {name} on Ray, default views, durable, {orders} orders x 10",
                "cmd/s",
                row["commands_per_s"],
                references={"1 engine": base["commands_per_s"]},
                aim=f">= {SHARDS_AIM}x 1 engine" if aim else "",
                met=(ratio >= SHARDS_AIM) if aim else None,
            )
        )
    figures.extend(
        figure(
            BENCH,
            f"query p50, {label}, 2 shards",
            "us",
            rows["2 shards"][f"{kind}_p50_us"],
            references={"1 engine": base[f"{kind}_p50_us"]},
            higher_is_better=False,
        )
        for kind, label in (("point", "GetOrderById (one shard)"), ("search", "SearchOrders page"))
    )
    return BenchResult(
        bench=BENCH,
        quick=quick,
        seconds=time.perf_counter() - started,
        config={"orders": orders, "adds": 8, "rounds": rounds},
        figures=figures,
        raw={"rows": rows, "samples": samples},
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every engine for ``--rounds`` rounds; print, write JSON and the chart."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--adds", type=int, default=8)
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "cluster.png")
    args = parser.parse_args(argv)
    configure_logging()
    counts = [int(text) for text in args.shards.split(",")]
    samples = measure(args.orders, args.adds, counts, args.queries, args.rounds)
    rows = {name: median_by_key(runs) for name, runs in samples.items()}
    base = rows["engine"]
    print(
        f"{args.orders * (args.adds + 2)} commands, {args.orders} orders, views on, durability "
        f"sync, medians of {args.rounds} rounds"
    )
    print(
        f"{'engine':<10} {'commands/s':>11} {'x engine':>9} "
        f"{'point p50 us':>13} {'search p50 us':>14} {'stats p50 us':>13}"
    )
    for name, row in rows.items():
        print(
            f"{name:<10} {row['commands_per_s']:>11,.0f} "
            f"{row['commands_per_s'] / base['commands_per_s']:>9.2f} "
            f"{row['point_p50_us']:>13,.0f} {row['search_p50_us']:>14,.0f} "
            f"{row['stats_p50_us']:>13,.0f}"
        )
    ratios = {name: row["commands_per_s"] / base["commands_per_s"] for name, row in rows.items()}
    target = write_json(
        {
            "commands": args.orders * (args.adds + 2),
            "orders": args.orders,
            "rounds": args.rounds,
            "rows": rows,
            "samples": samples,
            "ratios": ratios,
        },
        args.json,
        "cluster.json",
    )
    print(f"wrote {target} and {chart(rows, args.chart)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
