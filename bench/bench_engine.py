"""Write-side benchmark: commands/s, latency and memory per live aggregate, against references.

Workload: :func:`_workload.order_workload`, interleaved across orders (every order live at
once): per order one create, ``adds`` add-items, one ship or cancel; one event per command.
Full: 1k and 100k orders with 8 adds (10 commands per order; a million commands at 100k), medians
of 3 at 1k and one run at 100k. ``--quick``: 1k and 10k orders with 3 adds (5 commands per
order), one run.

Measured, in the same run:

- **engine**: ``Engine.open(views=[], idle_timeout=None, max_live_aggregates > orders)``; every
  command ``submit``-ted in a loop (the engine's in-flight gate applies backpressure), then every
  future awaited. Durability ``sync`` and ``async``.
- **limit**: the same commands in one thread, no actors: fingerprint, ``decide``, ``evolve``,
  build the ``StreamAppend`` exactly as an aggregate does, and ``EventStore.append_batch`` per
  1,000 appends at the same durability. What this design could approach.
- **peer**: the ``eventsourcing`` library (``peer_eventsourcing.run_peer``) on the same workload
  at the small size, POPO and SQLite stores, aggregate cache on.
- **latency**: ``execute`` one command at a time (the sequential workload), p50/p99.
- **memory per live aggregate**: anonymous RSS (``/proc/self/statm`` resident - shared: the LMDB
  map is file-backed and stays out) after the large run minus before it, divided by the live
  aggregates; also Python allocations under ``tracemalloc`` on the small workload. "Beyond its
  state" subtracts the deep size of the aggregates' final ``OrderState`` objects (objects shared
  with the commands, which exist before the measurement, are not counted).

Run: ``python bench/bench_engine.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec
from _common import (
    BenchResult,
    Figure,
    bench_main,
    configure_logging,
    deep_size,
    figure,
    median_by_key,
    peer,
    percentiles_us,
    progress,
    rss_anon_bytes,
    timed,
)
from _workload import order_workload

from actors import Engine
from actors._admission import fingerprint
from actors._aggregate import utc_now
from domain.orders import ORDERS, OrderCommand, OrderState
from store import Codec, Committed, Durability, EventStore, StreamAppend

__all__ = ["append_directly", "main", "run"]

BENCH: Final = "engine"
BATCH: Final = 1000
SNAPSHOT_EVERY: Final = 100  # the engine's default, so the limit does the same snapshot work
MAP_SIZE: Final = 256 * 2**20
_encoder = msgspec.msgpack.Encoder(decimal_format="string")


def _size_label(orders: int) -> str:
    return f"{orders // 1000}k" if orders % 1000 == 0 else str(orders)


# ---------------------------------------------------------------- the limit


def append_directly(
    store: EventStore, commands: Iterable[OrderCommand], batch: int = BATCH
) -> dict[str, OrderState]:
    """Run ``commands`` in this thread, no actors, appending per ``batch``; return final states.

    The per-command work is the aggregate actor's: fingerprint, decide, evolve, snapshot every
    :data:`SNAPSHOT_EVERY` events, one ``StreamAppend``.

    Raises:
        RuntimeError: A command was rejected or an append failed (a broken workload).
    """
    decide, evolve, initial = ORDERS.decide, ORDERS.evolve, ORDERS.initial()
    states: dict[str, OrderState] = {}
    versions: dict[str, int] = {}
    pending: list[StreamAppend] = []

    def flush() -> None:
        results = store.append_batch(pending)
        failed = [r for r in results if not isinstance(r, Committed)]
        if failed:
            raise RuntimeError(f"limit: {len(failed)} appends failed, first: {failed[0]!r}")
        pending.clear()

    for command in commands:
        aggregate_id = command.order_id
        state = states.get(aggregate_id, initial)
        print_ = fingerprint(command)
        now = utc_now()
        events = tuple(decide(state, command, now))
        for event in events:
            state = evolve(state, event)
        before = versions.get(aggregate_id, 0)
        version = before + len(events)
        snapshot = None
        if version // SNAPSHOT_EVERY != before // SNAPSHOT_EVERY:
            snapshot = _encoder.encode(state)
        pending.append(
            StreamAppend(
                stream_id=aggregate_id,
                stream_type=ORDERS.stream_type,
                expected_version=before,
                events=events,
                command_id=command.command_id,
                fingerprint=print_,
                timestamp=int(now.timestamp() * 1_000_000) * 1000,
                snapshot=snapshot,
            )
        )
        states[aggregate_id] = state
        versions[aggregate_id] = version
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return states


def run_limit(
    commands: Sequence[OrderCommand], durability: Durability
) -> tuple[float, dict[str, OrderState]]:
    """Return the limit's commands/s and the final states."""
    with tempfile.TemporaryDirectory(prefix="bench-limit-") as tmp:
        store = EventStore.open(
            tmp, codec=Codec(ORDERS.event_types), durability=durability, map_size=MAP_SIZE
        )
        try:
            states, seconds = timed(lambda: append_directly(store, commands))
        finally:
            store.close()
    return len(commands) / seconds, states


# ---------------------------------------------------------------- the engine


def _open(path: str, durability: Durability, orders: int) -> Engine:
    return Engine.open(
        path,
        durability=durability,
        views=[],
        max_live_aggregates=orders * 2 + 100,
        idle_timeout=None,
        map_size=MAP_SIZE,
    )


def _submit_all(engine: Engine, commands: Sequence[OrderCommand]) -> int:
    submit = engine.submit
    futures = [submit(command, timeout=120) for command in commands]
    for future in futures:
        future.get(timeout=120)
    return len(futures)


def run_engine(
    commands: Sequence[OrderCommand], durability: Durability, orders: int
) -> dict[str, float]:
    """Return the engine's commands/s with everything in flight, and RSS per live aggregate."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp,
        _open(tmp, durability, orders) as engine,
    ):
        gc.collect()
        before = rss_anon_bytes()
        done, seconds = timed(lambda: _submit_all(engine, commands))
        gc.collect()
        after = rss_anon_bytes()
        live = engine.status().live_aggregates
    return {
        "commands_per_s": done / seconds,
        "rss_per_aggregate": (after - before) / max(1, live),
        "live_aggregates": float(live),
    }


def traced_per_aggregate(commands: Sequence[OrderCommand], orders: int) -> float:
    """Return Python bytes allocated (tracemalloc) per live aggregate after the workload."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-traced-") as tmp,
        _open(tmp, "async", orders) as engine,
    ):
        gc.collect()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            _submit_all(engine, commands)
            gc.collect()
            now, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        live = engine.status().live_aggregates
    return (now - base) / max(1, live)


def latencies(commands: Sequence[OrderCommand], durability: Durability) -> dict[str, float]:
    """Return p50/p99 of ``execute``, one command at a time."""
    samples: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
        _open(tmp, durability, len(commands)) as engine,
    ):
        for command in commands:
            start = time.perf_counter()
            engine.execute(command)
            samples.append(time.perf_counter() - start)
    return percentiles_us(samples)


# ---------------------------------------------------------------- the run


def _median_runs(runs: int, work: Any) -> dict[str, float]:
    return median_by_key([work() for _ in range(runs)])


def _throughput(
    sizes: tuple[int, int], adds: int, runs: int
) -> tuple[dict[str, dict[str, float]], float]:
    """Return the engine's and the limit's medians, and the mean size of a small-run state."""
    raw: dict[str, dict[str, float]] = {}
    state_bytes = 0.0
    for orders in sizes:
        commands = order_workload(orders, adds)
        # The large size is one long run (a million commands): three would take minutes.
        repeat = runs if orders == sizes[0] else 1
        for durability in ("sync", "async"):
            label = f"{durability} {_size_label(orders)}"
            progress(f"engine {label}: {len(commands):,} commands in flight x {repeat}")
            raw[f"engine {label}"] = _median_runs(
                repeat, lambda c=commands, d=durability, o=orders: run_engine(c, d, o)
            )
            progress(f"limit {label}")
            samples = []
            for _ in range(repeat):
                rate, states = run_limit(commands, durability)
                samples.append({"commands_per_s": rate})
                if orders == sizes[0]:
                    # Objects shared with the commands (ids, prices) exist anyway: not counted.
                    state_bytes = deep_size(states.values(), exclude=commands) / len(states)
            raw[f"limit {label}"] = median_by_key(samples)
        del commands
    return raw, state_bytes


def run(quick: bool) -> BenchResult:
    """Run the write-side benchmark; return its figures and raw measurements."""
    configure_logging()
    started = time.perf_counter()
    small, large = (1000, 10_000) if quick else (1000, 100_000)
    adds = 3 if quick else 8
    runs = 1 if quick else 3
    latency_commands = 300 if quick else 2000

    raw, state_bytes = _throughput((small, large), adds, runs)
    small_commands = order_workload(small, adds)
    progress("tracemalloc per live aggregate")
    traced = traced_per_aggregate(small_commands, small)
    del small_commands
    for durability in ("sync", "async"):
        progress(f"latency {durability}: {latency_commands} commands one at a time")
        sequential = order_workload(small, adds, interleave=False)[:latency_commands]
        raw[f"latency {durability}"] = latencies(sequential, durability)
    popo = peer(small, "popo", adds)
    sqlite = peer(small, "sqlite", adds)
    raw["peer popo"], raw["peer sqlite"] = popo, sqlite

    s_small, s_large = _size_label(small), _size_label(large)
    figures: list[Figure] = []
    for durability in ("sync", "async"):
        name = "durable" if durability == "sync" else "async"
        ours = raw[f"engine {durability} {s_small}"]["commands_per_s"]
        refs = {
            "limit": raw[f"limit {durability} {s_small}"]["commands_per_s"],
            "peer POPO": popo["commands_per_s"],
            "peer SQLite": sqlite["commands_per_s"],
        }
        aim, met = "", None
        if durability == "sync":
            aim = ">= 15x SQLite, >= 4x POPO"
            met = ours >= 15 * refs["peer SQLite"] and ours >= 4 * refs["peer POPO"]
        figures.append(
            figure(
                BENCH,
                f"commands/s {name}, {s_small} aggregates, in flight",
                "cmd/s",
                ours,
                references=refs,
                aim=aim,
                met=met,
            )
        )
        big = raw[f"engine {durability} {s_large}"]["commands_per_s"]
        figures.append(
            figure(
                BENCH,
                f"commands/s {name}, {s_large} aggregates, in flight",
                "cmd/s",
                big,
                references={
                    "limit": raw[f"limit {durability} {s_large}"]["commands_per_s"],
                    f"{s_small} aggregates": ours,
                },
                aim=f">= 85% of {s_small}",
                met=big >= 0.85 * ours,
            )
        )
    figures.extend(
        figure(
            BENCH,
            f"execute latency {pct}, {durability}, one at a time",
            "us",
            raw[f"latency {durability}"][f"{pct}_us"],
            higher_is_better=False,
        )
        for durability in ("sync", "async")
        for pct in ("p50", "p99")
    )
    rss = raw[f"engine sync {s_large}"]["rss_per_aggregate"]
    figures.append(
        figure(
            BENCH,
            f"RSS per live aggregate beyond its state ({s_large} live)",
            "B",
            rss - state_bytes,
            aim="<= 4096 B",
            met=rss - state_bytes <= 4096,
            higher_is_better=False,
            note=f"RSS {rss:,.0f} B per aggregate, state {state_bytes:,.0f} B",
        )
    )
    figures.append(
        figure(
            BENCH,
            f"Python heap per live aggregate beyond its state ({s_small} live, tracemalloc)",
            "B",
            traced - state_bytes,
            aim="<= 4096 B",
            met=traced - state_bytes <= 4096,
            higher_is_better=False,
            note=f"traced {traced:,.0f} B per aggregate, state {state_bytes:,.0f} B",
        )
    )
    raw["memory"] = {"state_bytes": state_bytes, "traced_per_aggregate": traced}
    return BenchResult(
        bench=BENCH,
        quick=quick,
        seconds=time.perf_counter() - started,
        config={
            "orders": [small, large],
            "adds_per_order": adds,
            "commands_per_order": adds + 2,
            "runs": runs,
            "limit_batch": BATCH,
            "latency_commands": latency_commands,
        },
        figures=figures,
        raw=raw,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its table, write its JSON."""
    return bench_main(
        run,
        doc=__doc__,
        title="write side",
        default_name="engine.json",
        quick_help="small sizes, one run (~15 s)",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
