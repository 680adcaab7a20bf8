"""Point queries while a search thread and a full write load run (``bench_pipeline``'s last rows).

``GetOrderById`` is asked :data:`POINT_RATE` times a second, open loop (each latency from the
query's scheduled time, :func:`_common.paced_latencies`), once the load has started, in three
set-ups over the same engine: in its own process (the default), the same with a short GIL switch
interval (a process-wide setting only the embedding program may choose), and from a
``views.ViewReader`` in a process of its own (``_reader_probe.py``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

from _common import paced_latencies, percentiles_us, progress
from bench_views import LoadThread

from actors import Engine
from domain.orders import CreateOrder
from views.orders import GetOrderById, SearchOrders

__all__ = ["points_while_busy", "search_kinds"]

# GetOrderById per second while searches and writes run. At 1,000/s the in-process figure
# measured its own backlog (a waking thread gets the GIL about once per 5 ms switch interval
# while a search thread holds it: p50 179 ms); 100/s measures each query's own wait.
POINT_RATE: Final = 100.0
WARM_COMMANDS: Final = 500  # acknowledged by the write load before point queries are timed
SHORT_SWITCH_INTERVAL: Final = 0.0005  # seconds; CPython's default is 0.005


def search_kinds(creates: Sequence[CreateOrder]) -> dict[str, Callable[[int], SearchOrders]]:
    """One SearchOrders maker per kind of search (by index ``i``), drawn from ``creates``."""
    picks = creates[:: max(1, len(creates) // 500)]

    def customer(i: int) -> SearchOrders:
        return SearchOrders(query=picks[i % len(picks)].customer_id[-6:])

    def product(i: int) -> SearchOrders:
        return SearchOrders(query=picks[i % len(picks)].items[0].product_id)

    return {
        "newest first": lambda _: SearchOrders(),
        "status filter": lambda _: SearchOrders(status="shipped"),
        "total range": lambda _: SearchOrders(min_total=Decimal(100), max_total=Decimal(120)),
        "sort by total": lambda _: SearchOrders(sort_by="total_amount"),
        "customer id part": customer,
        "product id": product,
    }


def points_while_busy(
    engine: Engine, path: str, creates: Sequence[CreateOrder], seconds: float
) -> dict[str, dict[str, float]]:
    """Measure the three set-ups for ``seconds`` each; return their percentiles and load rates."""
    raw = {"point_under_search_and_load": _points_while_busy(engine, creates, seconds)}
    # The tail above is the GIL's: a query thread forced to hand it over waits its turn behind
    # the busy threads, a switch interval each (the engine lowers CPython's 5 ms to 1 ms, see
    # actors._switching). A shorter one still, which only the embedding program may choose
    # (process-wide), shortens it further.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SHORT_SWITCH_INTERVAL)
    try:
        raw["point_short_switch_interval"] = _points_while_busy(engine, creates, seconds)
    finally:
        sys.setswitchinterval(interval)
    progress("point queries from a reader process while searches and writes run")
    raw["point_from_reader_process"] = _points_from_reader_process(engine, path, creates, seconds)
    return raw


@contextlib.contextmanager
def _busy(engine: Engine, creates: Sequence[CreateOrder]) -> Iterator[LoadThread]:
    """Run a search thread and a full write load on ``engine`` for the ``with`` block."""
    stop = threading.Event()
    kinds = list(search_kinds(creates).values())

    def searcher() -> None:
        i = 0
        while not stop.is_set():
            engine.query(kinds[i % len(kinds)](i), timeout=30)
            i += 1

    thread = threading.Thread(target=searcher, name="bench-search", daemon=True)
    load = LoadThread(engine)
    thread.start()
    load.start()
    try:
        # Measure under load, not before it: wait (with a deadline) for its first commands.
        deadline = time.monotonic() + 60
        while load.commands < WARM_COMMANDS and load.is_alive() and time.monotonic() < deadline:
            stop.wait(0.005)
        if load.commands < WARM_COMMANDS:
            raise RuntimeError(f"the write load did not start: {load.error!r}")
        yield load
    finally:
        stop.set()
        load.stop()
        thread.join(60)
    if load.error is not None:
        raise RuntimeError(f"the write load failed: {load.error!r}")


def _points_while_busy(
    engine: Engine, creates: Sequence[CreateOrder], seconds: float
) -> dict[str, float]:
    """GetOrderById p50/p99 in the engine's process, :data:`POINT_RATE` per second for
    ``seconds`` (open loop), while searches and writes run."""

    def ask(i: int) -> object:
        return engine.query(GetOrderById(creates[(i * 7919) % len(creates)].order_id), timeout=30)

    with _busy(engine, creates) as load:
        samples = paced_latencies(ask, POINT_RATE, seconds)
    return percentiles_us(samples) | {"load_cmd_s": load.commands / max(load.seconds, 1e-9)}


def _points_from_reader_process(
    engine: Engine, path: str, creates: Sequence[CreateOrder], seconds: float
) -> dict[str, float]:
    """GetOrderById p50/p99 from a ``ViewReader`` in another process while ``engine`` is busy.

    The engine's process runs the same searches and write load as the in-process figure; the
    reader process (``_reader_probe.py``) asks :data:`POINT_RATE` queries per second for
    ``seconds``, open loop, as the in-process figure does.
    """
    probe = Path(__file__).with_name("_reader_probe.py")
    child = subprocess.Popen(  # noqa: S603 - our own script, run by this interpreter
        [sys.executable, str(probe), path, str(POINT_RATE), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    to_child, from_child = child.stdin, child.stdout
    if to_child is None or from_child is None:  # never: both are pipes
        raise RuntimeError("the reader process has no pipes")
    try:
        to_child.write(json.dumps([c.order_id for c in creates]) + "\n")
        to_child.flush()
        if from_child.readline().strip() != "ready":
            raise RuntimeError("the reader process did not start")
        with _busy(engine, creates) as load:
            to_child.write("go\n")
            to_child.flush()
            answer = from_child.readline()
        if child.wait(timeout=60) != 0 or not answer:
            raise RuntimeError(f"the reader process failed (exit {child.returncode})")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
    result: dict[str, float] = json.loads(answer)
    return result | {"load_cmd_s": load.commands / max(load.seconds, 1e-9)}
