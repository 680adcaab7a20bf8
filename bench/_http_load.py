"""The HTTP side of the HTTP benchmark: the load model, a minimal client and the server process.

Split from ``bench_http.py`` (which holds the Python-API references and the run) to keep each
script small. See that module's docstring for the method.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
from _common import percentiles_us, progress
from _workload import PRODUCTS, price_of, product_id

BENCH: Final = "http"

__all__ = [
    "ADDS",
    "BENCH",
    "KINDS",
    "LoadResult",
    "Plan",
    "Server",
    "http_load",
    "phases",
    "plans",
    "serve",
    "timed",
]
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


class Plan(msgspec.Struct, frozen=True):
    """One session's data: the customer, the first line, the added lines."""

    customer: str
    city: str
    lines: tuple[tuple[str, int, Decimal], ...]


def plans(seed: int) -> Iterator[Plan]:
    rng = random.Random(seed)
    while True:
        lines = []
        for _ in range(1 + ADDS):
            product = product_id(rng.randrange(PRODUCTS))
            lines.append((product, rng.randint(1, 5), price_of(product)))
        yield Plan(f"customer-{rng.randrange(10_000):05d}", f"city-{rng.randrange(50)}", (*lines,))


async def timed(samples: list[float], call: Awaitable[Any]) -> Any:
    start = time.perf_counter()
    answer = await call
    samples.append(time.perf_counter() - start)
    return answer


async def phases(
    result: LoadResult,
    session: Callable[[int, Plan, LoadResult], Awaitable[None]],
    seconds: float,
    max_sessions: int,
    server_cpu: Callable[[], float] = lambda: 0.0,
) -> None:
    """Warm up (one session per client, not counted), then run sessions until time or budget."""
    warm = LoadResult(clients=result.clients)
    streams = [plans(seed) for seed in range(result.clients)]
    await asyncio.gather(*(session(i, next(plan), warm) for i, plan in enumerate(streams)))
    if warm.errors:
        result.fail(f"warm-up: {warm.first_error}")
    own, server = time.process_time(), server_cpu()
    started = time.perf_counter()
    deadline = started + seconds
    budget = [max_sessions]

    async def client(index: int, plan: Iterator[Plan]) -> None:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            await session(index, next(plan), result)
            result.sessions += 1

    await asyncio.gather(*(client(i, plan) for i, plan in enumerate(streams)))
    result.seconds = time.perf_counter() - started
    result.own_cpu = time.process_time() - own
    result.server_cpu = server_cpu() - server


# ---------------------------------------------------------------- over HTTP


def _create_body(plan: Plan) -> bytes:
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


async def _http_session(connection: _Connection, plan: Plan, result: LoadResult) -> None:
    samples = result.samples

    async def call(
        kind: str, expected: int, method: str, target: str, body: bytes = b""
    ) -> tuple[dict[str, str], bytes] | None:
        try:
            status, headers, answer = await timed(
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

    async def session(client: int, plan: Plan, into: LoadResult) -> None:
        await _http_session(connections[client], plan, into)

    async def main() -> None:
        try:
            await phases(result, session, seconds, max_sessions, server.cpu_seconds)
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
