"""Helpers for the HTTP API tests: a real uvicorn server on a free loopback port, and bodies."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from actors import Engine
from api import ApiSettings, create_app, uvicorn_config
from store import EventStore, StreamAppend

STARTUP_SECONDS = 20.0
SHUTDOWN_SECONDS = 30.0

ADDRESS = {"street": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yield its base URL; stop it after."""
    # proto=IPPROTO_TCP: asyncio then sets TCP_NODELAY on each connection (as uvicorn's own
    # binding does); without it every answer waits ~40 ms on Nagle and delayed ACKs.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, log_level="warning", lifespan="on"))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[listener])
        except BaseException as error:  # reported by the thread waiting for startup below
            failures.append(error)

    thread = threading.Thread(target=run, name="uvicorn-under-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not server.started:
            assert not failures, failures
            assert thread.is_alive(), "the server stopped during startup"
            assert time.monotonic() < deadline, "the server did not start in time"
            thread.join(0.01)  # waits on the condition, bounded; returns early if it dies
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_SECONDS)
        listener.close()
        assert not thread.is_alive(), "the server did not stop in time"


@contextmanager
def served_engine(path: Path, settings: ApiSettings | None = None, **options: Any) -> Iterator[str]:
    """Open an engine at ``path``, serve it, and close both afterwards; yield the base URL."""
    with (
        Engine.open(path, **options) as engine,
        serving(create_app(engine, settings=settings)) as url,
    ):
        yield url


def order_body(
    customer_id: str = "alice",
    items: Sequence[tuple[str, int, str]] = (("widget", 2, "9.99"),),
    **extra: Any,
) -> dict[str, Any]:
    """Return a ``POST /orders`` body (prices as decimal strings)."""
    return {
        "customer_id": customer_id,
        "items": [
            {"product_id": product, "quantity": quantity, "price": price}
            for product, quantity, price in items
        ],
        "shipping_address": ADDRESS,
        **extra,
    }


class FlakyStore:
    """Delegates to the real store; ``append_batch`` raises while ``failing`` is set."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.failing = threading.Event()

    def append_batch(self, appends: Sequence[StreamAppend]) -> Any:
        if self.failing.is_set():
            raise OSError("injected: the disk went away")
        return self._store.append_batch(appends)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
