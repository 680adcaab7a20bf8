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

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
from _common import (
    BenchResult,
    Figure,
    configure_logging,
    figure,
    percentiles_us,
    print_figures,
    progress,
    write_json,
)
from _workload import PRODUCTS, price_of, product_id

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

BENCH: Final = "http"
ADDS: Final = 3
"""Add-item requests per session (so 6 requests: create, 3 adds, read back, stats)."""
KINDS: Final = ("create", "add", "get", "stats")
"""The request kinds, in session order."""
MAIN: Final = Path(__file__).resolve().parent.parent / "main.py"
START_SECONDS: Final = 30.0
STOP_SECONDS: Final = 15.0
REQUEST_SECONDS: Final = 10.0
_SERVING: Final = re.compile(r"on http://(\S+):(\d+) ")


class _Answer(msgspec.Struct):
    """The fields of a command's answer the session uses."""

    order_id: str
    position: int


_ANSWER: Final = msgspec.json.Decoder(_Answer)


class LoadResult(msgspec.Struct):
    """One load phase: what was done, how long it took, the latency samples by kind."""

    clients: int
    seconds: float = 0.0
    sessions: int = 0
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    own_cpu: float = 0.0
    server_cpu: float = 0.0
    samples: dict[str, list[float]] = msgspec.field(
        default_factory=lambda: {kind: [] for kind in KINDS}
    )

    def fail(self, text: str) -> None:
        """Count one error, keeping the first one's description."""
        self.errors += 1
        self.first_error = self.first_error or text[:300]

    def summary(self) -> dict[str, Any]:
        """Return requests/s, errors and p50/p99 per kind and overall (microseconds)."""
        every = [sample for kind in KINDS for sample in self.samples[kind]]
        return {
            "clients": self.clients,
            "seconds": self.seconds,
            "sessions": self.sessions,
            "requests": self.requests,
            "requests_per_s": self.requests / self.seconds if self.seconds else 0.0,
            "errors": self.errors,
            "first_error": self.first_error,
            # CPU seconds per request: this process (the clients; for the Python API also the
            # engine), and the server subprocess (HTTP only). Tells who the bottleneck is.
            "own_cpu_us_per_request": self.own_cpu / max(1, self.requests) * 1e6,
            "server_cpu_us_per_request": self.server_cpu / max(1, self.requests) * 1e6,
            "latency": {
                "all": percentiles_us(every),
                **{kind: percentiles_us(self.samples[kind]) for kind in KINDS},
            },
        }


class _Plan(msgspec.Struct, frozen=True):
    """One session's data: the customer, the first line, the added lines."""

    customer: str
    city: str
    lines: tuple[tuple[str, int, Decimal], ...]


def _plans(seed: int) -> Iterator[_Plan]:
    rng = random.Random(seed)
    while True:
        lines = []
        for _ in range(1 + ADDS):
            product = product_id(rng.randrange(PRODUCTS))
            lines.append((product, rng.randint(1, 5), price_of(product)))
        yield _Plan(f"customer-{rng.randrange(10_000):05d}", f"city-{rng.randrange(50)}", (*lines,))


async def _timed(samples: list[float], call: Awaitable[Any]) -> Any:
    start = time.perf_counter()
    answer = await call
    samples.append(time.perf_counter() - start)
    return answer


async def _phases(
    result: LoadResult,
    session: Callable[[int, _Plan, LoadResult], Awaitable[None]],
    seconds: float,
    max_sessions: int,
    server_cpu: Callable[[], float] = lambda: 0.0,
) -> None:
    """Warm up (one session per client, not counted), then run sessions until time or budget."""
    warm = LoadResult(clients=result.clients)
    plans = [_plans(seed) for seed in range(result.clients)]
    await asyncio.gather(*(session(i, next(plan), warm) for i, plan in enumerate(plans)))
    if warm.errors:
        result.fail(f"warm-up: {warm.first_error}")
    own, server = time.process_time(), server_cpu()
    started = time.perf_counter()
    deadline = started + seconds
    budget = [max_sessions]

    async def client(index: int, plan: Iterator[_Plan]) -> None:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            await session(index, next(plan), result)
            result.sessions += 1

    await asyncio.gather(*(client(i, plan) for i, plan in enumerate(plans)))
    result.seconds = time.perf_counter() - started
    result.own_cpu = time.process_time() - own
    result.server_cpu = server_cpu() - server


# ---------------------------------------------------------------- over HTTP


def _create_body(plan: _Plan) -> bytes:
    product, quantity, price = plan.lines[0]
    return msgspec.json.encode(
        {
            "customer_id": plan.customer,
            "items": [{"product_id": product, "quantity": quantity, "price": str(price)}],
            "shipping_address": {
                "street": "1 Main Street",
                "city": plan.city,
                "postal_code": "12345",
                "country": "FR",
            },
        }
    )


class _Connection:
    """A minimal HTTP/1.1 keep-alive client connection (one request at a time).

    The load generator shares the 2 cores with the server: httpx costs more CPU per request
    than the server itself (about 1.3 ms here), so a plain asyncio stream writing each request
    in one send and reading a ``Content-Length`` body keeps the client out of the figure.
    """

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, target: str, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return the status, the headers (lower-case names) and the body.

        Raises:
            OSError: The connection failed (it is closed; the next request reconnects).
            TimeoutError: No full answer in :data:`REQUEST_SECONDS`.
            ValueError: An answer this client cannot read (e.g. no ``Content-Length``).
        """
        try:
            async with asyncio.timeout(REQUEST_SECONDS):
                if self._streams is None:
                    self._streams = await asyncio.open_connection(*self._address)
                reader, writer = self._streams
                head = (
                    f"{method} {target} HTTP/1.1\r\nHost: {self._address[0]}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)  # one send: no Nagle wait between parts
                lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                answer = await reader.readexactly(int(headers["content-length"]))
                return int(lines[0].split(" ", 2)[1]), headers, answer
        except (OSError, TimeoutError, ValueError, KeyError, asyncio.IncompleteReadError) as error:
            await self.close()
            raise OSError(f"{method} {target}: {error!r}") from error

    async def close(self) -> None:
        """Close the connection (if open)."""
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.wait_closed(), REQUEST_SECONDS)


async def _http_session(connection: _Connection, plan: _Plan, result: LoadResult) -> None:
    samples = result.samples

    async def call(
        kind: str, expected: int, method: str, target: str, body: bytes = b""
    ) -> tuple[dict[str, str], bytes] | None:
        try:
            status, headers, answer = await _timed(
                samples[kind], connection.request(method, target, body)
            )
        except OSError as error:
            result.fail(f"{kind}: {error}")
            return None
        result.requests += 1
        if status != expected:
            result.fail(f"{kind}: {status} {answer[:200]!r}")
            return None
        return headers, answer

    created = await call("create", 201, "POST", "/orders", _create_body(plan))
    if created is None:
        return
    order_id = _ANSWER.decode(created[1]).order_id
    position = 0
    for product, quantity, price in plan.lines[1:]:
        body = {"product_id": product, "quantity": quantity, "price": str(price)}
        added = await call(
            "add", 200, "POST", f"/orders/{order_id}/items", msgspec.json.encode(body)
        )
        if added is None:
            return
        position = _ANSWER.decode(added[1]).position
    read = await call("get", 200, "GET", f"/orders/{order_id}?after={position}")
    if read is not None and read[0].get("etag") != f'"{1 + ADDS}"':
        result.fail(f"get: stale read, ETag {read[0].get('etag')}")
    await call("stats", 200, "GET", "/stats")


class Server(msgspec.Struct, frozen=True):
    """A running server: where it listens, its process id."""

    host: str
    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """Return the CPU time (user + system) the server process has used so far."""
        # /proc/PID/stat: the command name may hold spaces, so split after its ")".
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_load(server: Server, clients: int, seconds: float, max_sessions: int) -> LoadResult:
    """Run ``clients`` concurrent HTTP clients against ``server``; return what they measured."""
    result = LoadResult(clients=clients)
    connections = [_Connection(server.host, server.port) for _ in range(clients)]

    async def session(client: int, plan: _Plan, into: LoadResult) -> None:
        await _http_session(connections[client], plan, into)

    async def main() -> None:
        try:
            await _phases(result, session, seconds, max_sessions, server.cpu_seconds)
        finally:
            for connection in connections:
                await connection.close()

    asyncio.run(main())
    return result


@contextmanager
def serve(data: Path) -> Iterator[Server]:
    """Run ``main.py serve`` on a free loopback port over ``data``; yield it once ready.

    Raises:
        RuntimeError: The server exited or did not become ready in :data:`START_SECONDS`.
    """
    log = data.parent / "server.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own CLI, run by this interpreter
            [sys.executable, str(MAIN), "serve", "--data", str(data), "--port", "0"],
            cwd=MAIN.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        host, port = _wait_ready(process, log)
        yield Server(host, port, process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(timeout=STOP_SECONDS)
        if code != 0:
            progress(f"server exited with {code}: {log.read_text()[-2000:]}")


def _wait_ready(process: subprocess.Popen[bytes], log: Path) -> tuple[str, int]:
    """Return the server's host and port once ``GET /status`` answers 200."""
    deadline = time.monotonic() + START_SECONDS
    address: tuple[str, int] | None = None
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited ({process.returncode}): {log.read_text()}")
            if address is None and (found := _SERVING.search(log.read_text())):
                address = (found[1], int(found[2]))
            if address is not None:
                try:
                    answer = client.get(f"http://{address[0]}:{address[1]}/status")
                    if answer.status_code == httpx.codes.OK:
                        return address
                except httpx.HTTPError:
                    pass  # not accepting yet
            time.sleep(0.05)  # polling a condition, with a deadline
    raise RuntimeError(f"server not ready in {START_SECONDS} s: {log.read_text()}")


# ---------------------------------------------------------------- through the Python API


def _commands(plan: _Plan) -> tuple[CreateOrder, list[AddOrderItem]]:
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

    async def session(_client: int, plan: _Plan, into: LoadResult) -> None:
        samples = into.samples
        create, adds = _commands(plan)
        await _timed(samples["create"], engine.execute_async(create))
        position = 0
        for add in adds:
            position = (await _timed(samples["add"], engine.execute_async(add))).position
        query = engine.query_async(GetOrderById(create.order_id), after=position)
        await _timed(samples["get"], query)
        await _timed(samples["stats"], engine.query_async(GetOrderStats()))
        into.requests += 3 + len(adds)

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, Engine.open(tmp) as engine:
        asyncio.run(_phases(result, session, seconds, max_sessions))
    return result


def direct_sync(seconds: float, max_sessions: int) -> LoadResult:
    """Run the sessions one request at a time in this thread on an in-process engine."""
    result = LoadResult(clients=1)
    plans = _plans(0)

    def timed(samples: list[float], call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        answer = call()
        samples.append(time.perf_counter() - start)
        return answer

    def session(plan: _Plan, into: LoadResult) -> None:
        samples = into.samples
        create, adds = _commands(plan)
        timed(samples["create"], lambda: engine.execute(create))
        position = 0
        for add in adds:
            position = timed(samples["add"], partial(engine.execute, add)).position
        query = GetOrderById(create.order_id)
        timed(samples["get"], lambda: engine.query(query, after=position))
        timed(samples["stats"], lambda: engine.query(GetOrderStats()))
        into.requests += 3 + len(adds)

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, Engine.open(tmp) as engine:
        session(next(plans), LoadResult(clients=1))  # warm up, not counted
        started = time.perf_counter()
        deadline = started + seconds
        while result.sessions < max_sessions and time.perf_counter() < deadline:
            session(next(plans), result)
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 clients, 3 s phases (~15 s)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="results file")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print_figures(result["figures"], f"HTTP load ({result['seconds']:.0f} s)")
    path = write_json(result, args.json, "http.json")
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
