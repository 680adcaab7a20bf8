"""HTTP load benchmark: requests/s and latency with concurrent clients on loopback.

The server is the real one, ``python main.py serve --data DIR --port 0``, in a subprocess (so
the load generator does not share its GIL), over a fresh data directory with the default engine
options (durability ``sync``, every order view). It is ready once ``GET /status`` answers; it is
stopped with SIGINT, as Ctrl+C would, and waited for with a timeout.

Load: ``clients`` asyncio tasks in this process, each with its own keep-alive connection (a
minimal HTTP/1.1 client: httpx would cost more CPU per request than the server, on the same
cores), each running *sessions* back to back until the time or the session budget runs out. A
session is the mixed workload of one order: ``POST /orders`` (one line), :data:`ADDS` x
``POST /orders/{id}/items``, ``GET /orders/{id}?after=<position of the last add>`` (read your
writes: its ETag must be the order's version) and ``GET /stats``. Every answer that is not the
expected 2xx (or a stale read, or a transport error) is counted as an error: there must be none.
One untimed session per client warms the connections and the server first.

Same-run references, the same sessions through the Python API on an in-process engine (same
options, fresh directory), for the same duration:

- **limit**: the same number of concurrent clients as asyncio tasks calling
  ``Engine.execute_async`` / ``query_async``: what the engine gives without HTTP;
- **1 thread**: one thread calling ``Engine.execute`` / ``query``, one request at a time.

Full: 8 and 32 clients, 10 s each. ``--quick``: 8 clients, 3 s (about 15 s in all).

Run: ``python bench/bench_http.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from _common import (
    BenchResult,
    Figure,
    bench_main,
    configure_logging,
    figure,
    progress,
)

from actors import Engine
from domain.orders import AddOrderItem, Address, CreateOrder, OrderItem
from views.orders import GetOrderById, GetOrderStats

__all__ = [
    "KINDS",
    "LoadResult",
    "Server",
    "direct_async",
    "direct_sync",
    "http_load",
    "main",
    "run",
    "serve",
]

from _http_load import (
    ADDS,
    BENCH,
    KINDS,
    LoadResult,
    Plan,
    Server,
    http_load,
    phases,
    plans,
    serve,
    timed,
)

# ---------------------------------------------------------------- through the Python API


def _commands(plan: Plan) -> tuple[CreateOrder, list[AddOrderItem]]:
    product, quantity, price = plan.lines[0]
    create = CreateOrder(
        customer_id=plan.customer,
        items=[OrderItem(product_id=product, quantity=quantity, price=price)],
        shipping_address=Address(
            street="1 Main Street", city=plan.city, postal_code="12345", country="FR"
        ),
    )
    adds = [
        AddOrderItem(order_id=create.order_id, product_id=p, quantity=q, price=price)
        for p, q, price in plan.lines[1:]
    ]
    return create, adds


def direct_async(clients: int, seconds: float, max_sessions: int) -> LoadResult:
    """Run the sessions as ``clients`` asyncio tasks on an in-process engine (no HTTP)."""
    result = LoadResult(clients=clients)

    async def session(_client: int, plan: Plan, into: LoadResult) -> None:
        samples = into.samples
        create, adds = _commands(plan)
        await timed(samples["create"], engine.execute_async(create))
        position = 0
        for add in adds:
            position = (await timed(samples["add"], engine.execute_async(add))).position
        query = engine.query_async(GetOrderById(create.order_id), after=position)
        await timed(samples["get"], query)
        await timed(samples["stats"], engine.query_async(GetOrderStats()))
        into.requests += 3 + len(adds)

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, Engine.open(tmp) as engine:
        asyncio.run(phases(result, session, seconds, max_sessions))
    return result


def direct_sync(seconds: float, max_sessions: int) -> LoadResult:
    """Run the sessions one request at a time in this thread on an in-process engine."""
    result = LoadResult(clients=1)
    queue = plans(0)

    def measured(samples: list[float], call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        answer = call()
        samples.append(time.perf_counter() - start)
        return answer

    def session(plan: Plan, into: LoadResult) -> None:
        samples = into.samples
        create, adds = _commands(plan)
        measured(samples["create"], lambda: engine.execute(create))
        position = 0
        for add in adds:
            position = measured(samples["add"], partial(engine.execute, add)).position
        query = GetOrderById(create.order_id)
        measured(samples["get"], lambda: engine.query(query, after=position))
        measured(samples["stats"], lambda: engine.query(GetOrderStats()))
        into.requests += 3 + len(adds)

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, Engine.open(tmp) as engine:
        session(next(queue), LoadResult(clients=1))  # warm up, not counted
        started = time.perf_counter()
        deadline = started + seconds
        while result.sessions < max_sessions and time.perf_counter() < deadline:
            session(next(queue), result)
            result.sessions += 1
        result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------- the run


def _figures(http: dict[str, Any], limit: dict[str, Any], single: dict[str, Any]) -> list[Figure]:
    """Return one level's figures: requests/s, then p99 overall and per kind (p50 in the note)."""
    clients = http["clients"]
    figures = [
        figure(
            BENCH,
            f"HTTP mixed requests/s, {clients} clients",
            "req/s",
            http["requests_per_s"],
            references={"limit": limit["requests_per_s"], "1 thread": single["requests_per_s"]},
            note=(
                f"per order: create, {ADDS} adds, GET ?after, GET /stats; "
                f"limit: Python API, {clients} async clients; 1 thread: Python API, one at a "
                f"time; CPU per request: server "
                f"{http['server_cpu_us_per_request']:,.0f} us, clients "
                f"{http['own_cpu_us_per_request']:,.0f} us"
            ),
        )
    ]
    for kind in ("all", *KINDS):
        ours, ref = http["latency"][kind], limit["latency"][kind]
        figures.append(
            figure(
                BENCH,
                f"HTTP latency p99, {kind if kind == 'all' else kind + ' requests'}, "
                f"{clients} clients",
                "us",
                ours["p99_us"],
                references={"limit": ref["p99_us"]},
                higher_is_better=False,
                note=f"p50 {ours['p50_us']:,.0f} us (limit {ref['p50_us']:,.0f} us)",
            )
        )
    return figures


def run(quick: bool) -> BenchResult:
    """Run the HTTP load benchmark; return its figures and raw measurements."""
    configure_logging()
    started = time.perf_counter()
    levels = (8,) if quick else (8, 32)
    seconds = 3.0 if quick else 10.0
    max_sessions = 5_000 if quick else 50_000
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        progress("starting the HTTP server (main.py serve, durability sync)")
        with serve(Path(tmp) / "data") as server:
            for clients in levels:
                progress(f"HTTP: {clients} clients for {seconds:.0f} s")
                raw[f"http {clients}"] = http_load(server, clients, seconds, max_sessions)
    for clients in levels:
        progress(f"Python API: {clients} async clients for {seconds:.0f} s")
        raw[f"limit {clients}"] = direct_async(clients, seconds, max_sessions)
    progress(f"Python API: 1 thread for {seconds:.0f} s")
    raw["1 thread"] = direct_sync(seconds, max_sessions)
    summaries = {name: result.summary() for name, result in raw.items()}
    figures: list[Figure] = []
    for clients in levels:
        figures.extend(
            _figures(
                summaries[f"http {clients}"], summaries[f"limit {clients}"], summaries["1 thread"]
            )
        )
    errors = {name: s for name, s in summaries.items() if s["errors"]}
    first = next((s["first_error"] for s in errors.values()), "")
    total = sum(s["errors"] for s in summaries.values())
    figures.append(
        figure(
            BENCH,
            "errors (non-2xx, stale reads, transport), every phase",
            "errors",
            float(total),
            aim="= 0",
            met=total == 0,
            higher_is_better=False,
            note=f"first: {first}" if first else "",
        )
    )
    return BenchResult(
        bench=BENCH,
        quick=quick,
        seconds=time.perf_counter() - started,
        config={
            "clients": list(levels),
            "seconds_per_phase": seconds,
            "max_sessions": max_sessions,
            "requests_per_session": 3 + ADDS,
            "durability": "sync",
            "server": "main.py serve (uvicorn, subprocess)",
        },
        figures=figures,
        raw=summaries,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its table, write its JSON."""
    return bench_main(
        run,
        doc=__doc__,
        title="HTTP load",
        default_name="http.json",
        quick_help="8 clients, 3 s phases (~15 s)",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
