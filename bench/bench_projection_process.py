"""Projection modes benchmark: the views projected in the engine's process or in a projection
process of their own (``Engine.open(path, projection=...)``), in the same run.

Configurations, durable (``sync``):

- **in-process**: the default order views, projected by the engine's projector thread;
- **process**: the same views, all kept by the projection process (LMDB views written there and
  read here; memory views kept and queried there): the engine's process only writes and asks;
- **views=[]** (reference, labelled): no views at all, the write side alone.

Measured per configuration:

- **throughput**: 1,000 orders x 20 commands (quick: 200 x 20), every command submitted then
  awaited (median of 3; quick: one run);
- **latency**: ``execute`` one command at a time, p50/p99 (quick: 200 commands);
- **ack -> visible**: under a paced load at half the in-process throughput, a sampler executes a
  ``CreateOrder`` and times until ``query(GetOrderById(id), after=position)`` answers, p50/p99.

Run: ``python bench/bench_projection_process.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Final

from _common import BenchResult, Figure, bench_main, configure_logging, figure, percentiles_us
from _common import progress as say
from _workload import order_workload
from bench_pipeline import PacedLoad

from actors import Engine
from domain.orders import CreateOrder, OrderCommand
from views.orders import GetOrderById

__all__ = ["main", "run"]

BENCH: Final = "projection"
MAP_SIZE: Final = 1024 * 2**20
NO_VIEWS: Final = "views=[]"
MODES: Final[dict[str, dict[str, Any]]] = {
    "in-process": {"projection": "in-process"},
    "process": {"projection": "process"},
    NO_VIEWS: {"views": []},
}
WITH_VIEWS: Final = ("in-process", "process")


def _open(path: str, mode: str) -> Engine:
    return Engine.open(path, idle_timeout=None, map_size=MAP_SIZE, **MODES[mode])


def throughput(commands: Sequence[OrderCommand], mode: str) -> tuple[float, float]:
    """Commands/s, durable, every command in flight: until acknowledged, until visible."""
    with tempfile.TemporaryDirectory(prefix="bench-proj-") as tmp, _open(tmp, mode) as engine:
        started = time.perf_counter()
        futures = [engine.submit(command, timeout=120) for command in commands]
        for future in futures:
            future.get(timeout=120)
        acked = time.perf_counter() - started
        if not engine.wait_for_views(timeout=600):
            raise RuntimeError(f"{mode}: the views did not catch up")
        visible = time.perf_counter() - started
    return len(commands) / acked, len(commands) / visible


def latency(commands: Sequence[OrderCommand], mode: str) -> dict[str, float]:
    """p50/p99 of ``execute``, durable, one command at a time."""
    samples = []
    with tempfile.TemporaryDirectory(prefix="bench-proj-") as tmp, _open(tmp, mode) as engine:
        for command in commands:
            started = time.perf_counter()
            engine.execute(command)
            samples.append(time.perf_counter() - started)
    return percentiles_us(samples)


def ack_to_visible(mode: str, rate: float, samples: int) -> dict[str, float]:
    """ack -> visible p50/p99 while a paced load runs at ``rate`` commands/s."""
    creates = [c for c in order_workload(samples, 0, seed=5) if isinstance(c, CreateOrder)]
    lags = []
    with tempfile.TemporaryDirectory(prefix="bench-proj-") as tmp, _open(tmp, mode) as engine:
        load = PacedLoad(engine, rate)
        load.start()
        try:
            for command in creates:
                done = engine.execute(command, timeout=30)
                acked = time.perf_counter()
                engine.query(GetOrderById(command.order_id), after=done.position, timeout=10)
                lags.append(time.perf_counter() - acked)
        finally:
            load.stop()
        if load.error is not None:
            raise RuntimeError(f"paced load failed: {load.error!r}") from load.error
    return percentiles_us(lags)


def _measure(quick: bool) -> dict[str, Any]:
    orders, adds = (200, 18) if quick else (1000, 18)
    runs = 1 if quick else 3
    commands = order_workload(orders, adds)
    sequential = order_workload(orders, adds, interleave=False)[: 200 if quick else 2000]
    raw: dict[str, Any] = {}
    for mode in MODES:
        say(f"throughput {mode}: {len(commands):,} commands x {runs}")
        pairs = [throughput(commands, mode) for _ in range(runs)]
        raw[f"throughput {mode}"] = statistics.median(acked for acked, _ in pairs)
        raw[f"throughput visible {mode}"] = statistics.median(seen for _, seen in pairs)
        say(f"latency {mode}: {len(sequential)} commands one at a time")
        raw[f"latency {mode}"] = latency(sequential, mode)
    rate = raw["throughput in-process"] / 2
    for mode in WITH_VIEWS:
        say(f"ack -> visible {mode} under {rate:,.0f} commands/s")
        raw[f"lag {mode}"] = ack_to_visible(mode, rate, 100 if quick else 1000)
    raw["paced_rate"] = rate
    return raw


def _figures(raw: dict[str, Any]) -> list[Figure]:
    figures = []
    base = "in-process"
    for mode in MODES:
        ref = {} if mode == base else {base: raw[f"throughput {base}"]}
        aim: dict[str, Any] = {}
        if mode in WITH_VIEWS:
            ref[NO_VIEWS] = raw[f"throughput {NO_VIEWS}"]
            ratio = raw[f"throughput {mode}"] / ref[NO_VIEWS]
            aim = {"aim": ">= 0.8x views=[]", "met": ratio >= 0.8}
        figures.append(
            figure(
                BENCH,
                f"commands/s durable, all in flight, {mode}",
                "cmd/s",
                raw[f"throughput {mode}"],
                references=ref,
                **aim,
                note=f"until every view caught up: {raw[f'throughput visible {mode}']:,.0f} cmd/s",
            )
        )
    for mode in MODES:
        lat = raw[f"latency {mode}"]
        ref = {} if mode == base else {base: raw[f"latency {base}"]["p50_us"]}
        aim = {}
        if mode in WITH_VIEWS:
            ref[NO_VIEWS] = raw[f"latency {NO_VIEWS}"]["p50_us"]
            aim = {"aim": "<= 1.15x views=[]", "met": lat["p50_us"] <= 1.15 * ref[NO_VIEWS]}
        figures.append(
            figure(
                BENCH,
                f"execute p50 durable, one at a time, {mode}",
                "us",
                lat["p50_us"],
                references=ref,
                **aim,
                higher_is_better=False,
                note=f"p99 {lat['p99_us']:,.0f} us",
            )
        )
    for mode in WITH_VIEWS:
        lag = raw[f"lag {mode}"]
        ref = {} if mode == base else {base: raw[f"lag {base}"]["p99_us"]}
        figures.append(
            figure(
                BENCH,
                f"ack -> visible p99 at {raw['paced_rate']:,.0f} cmd/s, {mode}",
                "us",
                lag["p99_us"],
                references=ref,
                aim="<= 10 ms",
                met=lag["p99_us"] <= 10_000,
                higher_is_better=False,
                note=f"p50 {lag['p50_us']:,.0f} us",
            )
        )
    return figures


def run(quick: bool) -> BenchResult:
    """Run the projection-modes benchmark; return its figures and raw measurements."""
    configure_logging()
    started = time.perf_counter()
    raw = _measure(quick)
    return BenchResult(
        bench=BENCH,
        quick=quick,
        seconds=time.perf_counter() - started,
        config={"modes": list(MODES), "durability": "sync"},
        figures=_figures(raw),
        raw=raw,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its table, write its JSON."""
    return bench_main(
        run,
        doc=__doc__,
        title="projection modes",
        default_name="projection.json",
        quick_help="200 orders, one run",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
