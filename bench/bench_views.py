"""Read-side benchmark: rebuild events/s, query latency and command-to-visible lag.

A log of N events (``--quick`` 50k, full 500k: the order workload, 20 events per order) is
written straight through ``EventStore.append_batch`` (the write path is ``bench_engine``'s
subject), then the engine opens it with the default order views (``order_details`` and
``customer_orders`` in LMDB, ``order_search`` and ``order_stats`` in memory). Measured:

- **rebuild**: ``engine.rebuild(view)`` of each view, events/s, grouped by backend; references
  in the same run: the raw scan + decode (``EventStore.read_all``, the limit of any replay) and
  the ``eventsourcing`` library's projection catch-up into an in-memory view
  (``run_peer(...)["projection_events_per_s"]``, POPO and SQLite stores; ``--quick`` runs the
  peer on a smaller log, its rate being flat in N, and says so).
- **catch-up at open**: the four projectors replaying the log when the engine opens.
- **query latency** through the router (``engine.query``): ``GetOrderById``,
  ``GetCustomerOrders``, ``SearchOrders`` (a product-id search, page of 10) and
  ``GetOrderStats``, p50/p99, idle and under full write load (a thread submitting new orders
  continuously, at most :data:`WINDOW` commands in flight).
- **visible lag**: ``execute`` a new ``CreateOrder``, then time from the acknowledgement until
  ``engine.query(GetOrderById(id), after=result.position)`` answers: idle and under load.

Run: ``python bench/bench_views.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from _common import (
    BenchResult,
    Figure,
    bench_main,
    configure_logging,
    figure,
    peer,
    percentiles_us,
    progress,
    timed,
)
from _workload import order_waves, order_workload
from bench_engine import append_directly

from actors import Engine
from domain.orders import ORDERS, CreateOrder
from store import Codec, EventStore
from views.orders import (
    QUERY_VIEW,
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    SearchOrders,
)

__all__ = ["LoadThread", "main", "run"]

BENCH: Final = "views"
COMMANDS_PER_ORDER: Final = 20
WINDOW: Final = 500
"""Most commands the load thread keeps in flight."""
MAP_SIZE: Final = 512 * 2**20


def build_log(path: str, events: int) -> list[CreateOrder]:
    """Write ``events`` order events to a fresh store at ``path``; return the creates."""
    commands = order_workload(events // COMMANDS_PER_ORDER)
    store = EventStore.open(
        path, codec=Codec(ORDERS.event_types), durability="async", map_size=MAP_SIZE
    )
    try:
        append_directly(store, commands, batch=2000)
    finally:
        store.close()
    return [command for command in commands if isinstance(command, CreateOrder)]


class LoadThread(threading.Thread):
    """Submits new orders' commands continuously, keeping at most :data:`WINDOW` in flight."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(name="bench-load", daemon=True)
        self._engine = engine
        self._stop_flag = threading.Event()
        self.commands = 0
        self.seconds = 0.0
        self.error: BaseException | None = None

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the thread to stop and wait for its commands to be acknowledged."""
        self._stop_flag.set()
        self.join(timeout)

    def run(self) -> None:
        """Submit until stopped; remember the first error."""
        started = time.perf_counter()
        in_flight: collections.deque[Any] = collections.deque()
        try:
            # Waves of 250 orders, their ids later than the log's and each wave's.
            for command in order_waves(None, 250, first=1000):
                if self._stop_flag.is_set():
                    return
                in_flight.append(self._engine.submit(command, timeout=60))
                if len(in_flight) >= WINDOW:
                    in_flight.popleft().get(timeout=60)
                self.commands += 1
        except BaseException as error:  # reported by the benchmark, whatever it is
            self.error = error
        finally:
            while in_flight:
                in_flight.popleft().get(timeout=60)
            self.seconds = time.perf_counter() - started


def _query_latencies(
    engine: Engine, queries: dict[str, Callable[[int], Any]], samples: int, budget: float
) -> dict[str, dict[str, float]]:
    """Time ``samples`` of each query, or as many as fit in ``budget`` seconds per query."""
    result = {}
    for name, make in queries.items():
        seconds: list[float] = []
        deadline = time.perf_counter() + budget
        for i in range(samples):
            query = make(i)
            start = time.perf_counter()
            engine.query(query, timeout=10)
            seconds.append(time.perf_counter() - start)
            if start > deadline:
                break
        result[name] = percentiles_us(seconds)
    return result


def _visible_lag(engine: Engine, samples: int, seed: int, budget: float) -> dict[str, float]:
    """Time ack -> visible for ``samples`` new orders, or as many as fit in ``budget`` seconds."""
    creates = [c for c in order_workload(samples, 0, seed=seed) if isinstance(c, CreateOrder)]
    lags: list[float] = []
    deadline = time.perf_counter() + budget
    for command in creates:
        result = engine.execute(command, timeout=30)
        acknowledged = time.perf_counter()
        seen = engine.query(GetOrderById(command.order_id), after=result.position, timeout=10)
        lags.append(time.perf_counter() - acknowledged)
        if seen is None:
            raise RuntimeError(f"order {command.order_id} not visible after its position")
        if acknowledged > deadline:
            break
    return percentiles_us(lags)


def _rebuilds(engine: Engine) -> dict[str, dict[str, float]]:
    backends = {name: view.backend for name, view in engine.status().views.items()}
    rebuilt = {}
    for name, backend in backends.items():
        progress(f"rebuild {name} ({backend})")
        report = engine.rebuild(name)
        rebuilt[name] = {
            "events": float(report.events),
            "seconds": report.seconds,
            "events_per_s": report.events_per_second,
            "lmdb": float(backend == "lmdb"),
        }
    return rebuilt


def _grouped(rebuilt: dict[str, dict[str, float]], lmdb: bool) -> float:
    chosen = [r for r in rebuilt.values() if bool(r["lmdb"]) == lmdb]
    return sum(r["events"] for r in chosen) / sum(r["seconds"] for r in chosen)


def _measure(
    path: str, creates: Sequence[CreateOrder], samples: int, lag_samples: int, budget: float
) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    opened = time.perf_counter()
    with Engine.open(path, durability="sync", idle_timeout=None, map_size=MAP_SIZE) as engine:
        head = engine.store.head()
        if not engine.wait_for_views(head, timeout=600):
            raise RuntimeError("views did not catch up at open")
        raw["catch_up_at_open_events_per_s"] = head / (time.perf_counter() - opened)
        progress(f"scan + decode {head:,} events")
        scanned, seconds = timed(lambda: sum(len(b) for b in engine.store.read_all()))
        raw["scan_decode_events_per_s"] = scanned / seconds
        raw["rebuild"] = _rebuilds(engine)
        some = creates[:: max(1, len(creates) // 997)]
        product = creates[0].items[0].product_id
        queries: dict[str, Callable[[int], Any]] = {
            "GetOrderById": lambda i: GetOrderById(some[i % len(some)].order_id),
            "GetCustomerOrders": lambda i: GetCustomerOrders(some[i % len(some)].customer_id),
            "SearchOrders": lambda _: SearchOrders(query=product, page_size=10),
            "GetOrderStats": lambda _: GetOrderStats(),
        }
        views = engine.status().views
        raw["query_backends"] = {
            name: views[QUERY_VIEW[type(make(0))]].backend for name, make in queries.items()
        }
        progress(f"queries idle: {samples} of each")
        raw["query_idle"] = _query_latencies(engine, queries, samples, budget)
        raw["lag_idle"] = _visible_lag(engine, lag_samples, 11, budget)
        load = LoadThread(engine)
        load.start()
        try:
            progress(f"queries under write load: {samples} of each, then {lag_samples} lags")
            raw["query_load"] = _query_latencies(engine, queries, samples, budget)
            raw["lag_load"] = _visible_lag(engine, lag_samples, 12, budget * 2)
        finally:
            load.stop()
        if load.error is not None:
            raise RuntimeError(f"load thread failed: {load.error!r}") from load.error
        raw["load_commands_per_s"] = load.commands / load.seconds if load.seconds else 0.0
    return raw


def run(quick: bool) -> BenchResult:
    """Run the read-side benchmark; return its figures and raw measurements."""
    configure_logging()
    started = time.perf_counter()
    events = 50_000 if quick else 500_000
    samples = 200 if quick else 1000
    lag_samples = 100 if quick else 500
    budget = 0.75 if quick else 10.0  # seconds per latency series, at most
    # The peer's projection rate is flat in N; quick shares the engine bench's peer runs.
    peer_orders, peer_adds = (1000, 3) if quick else (min(events, 100_000) // 20, 18)
    with tempfile.TemporaryDirectory(prefix="bench-views-") as tmp:
        progress(f"building a log of {events:,} events")
        creates = build_log(tmp, events)
        raw = _measure(tmp, creates, samples, lag_samples, budget)
    popo = peer(peer_orders, "popo", peer_adds)
    sqlite = peer(1000, "sqlite", peer_adds if quick else 18)
    raw["peer popo"], raw["peer sqlite"] = popo, sqlite

    refs = {
        "limit": raw["scan_decode_events_per_s"],
        "peer POPO": popo["projection_events_per_s"],
        "peer SQLite": sqlite["projection_events_per_s"],
    }
    note = f"peer on {popo['events']:,.0f} / {sqlite['events']:,.0f} events"
    figures: list[Figure] = []
    for lmdb, label in ((False, "in-memory"), (True, "LMDB")):
        rate = _grouped(raw["rebuild"], lmdb)
        figures.append(
            figure(
                BENCH,
                f"rebuild {label} views, {events // 1000}k events",
                "events/s",
                rate,
                references=refs,
                aim=">= 3x POPO projection",
                met=rate >= 3 * refs["peer POPO"],
                note=note,
            )
        )
    figures.append(
        figure(
            BENCH,
            "catch-up of 4 views at open",
            "events/s",
            raw["catch_up_at_open_events_per_s"],
            references={"limit": refs["limit"]},
        )
    )
    for state in ("idle", "load"):
        when = "idle" if state == "idle" else "under write load"
        for name, lat in raw[f"query_{state}"].items():
            backend = raw["query_backends"][name]
            for pct in ("p50", "p99"):
                aim, met = "", None
                # The aim is for point queries; a search scans every order by design.
                if pct == "p50" and name != "SearchOrders":
                    aim, met = "<= 100 us", lat["p50_us"] <= 100
                figures.append(
                    figure(
                        BENCH,
                        f"query {name} ({backend}) {pct}, {when}",
                        "us",
                        lat[f"{pct}_us"],
                        aim=aim,
                        met=met,
                        higher_is_better=False,
                    )
                )
        lag = raw[f"lag_{state}"]
        for pct in ("p50", "p99"):
            aim, met = "", None
            if pct == "p99" and state == "load":
                aim, met = "<= 10 ms", lag["p99_us"] <= 10_000
            figures.append(
                figure(
                    BENCH,
                    f"ack -> visible lag {pct}, {when}",
                    "us",
                    lag[f"{pct}_us"],
                    aim=aim,
                    met=met,
                    higher_is_better=False,
                )
            )
    figures.append(
        figure(BENCH, "commands/s of the load thread", "cmd/s", raw["load_commands_per_s"])
    )
    return BenchResult(
        bench=BENCH,
        quick=quick,
        seconds=time.perf_counter() - started,
        config={
            "events": events,
            "query_samples": samples,
            "lag_samples": lag_samples,
            "load_window": WINDOW,
            "peer_popo_events": popo["events"],
            "peer_sqlite_events": sqlite["events"],
        },
        figures=figures,
        raw=raw,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its table, write its JSON."""
    return bench_main(
        run,
        doc=__doc__,
        title="read side",
        default_name="views.json",
        quick_help="50k events, fewer samples",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
