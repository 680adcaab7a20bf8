"""A child process for the saga crash test: it runs the example shop until the parent kills it.

Usage: ``python saga_child.py PATH ORDERS`` with the repository root on PYTHONPATH. It opens the
whole example (deciders, read model, codec, fulfilment saga), receives ``ORDERS // 2`` kettles
once, then places orders ``so-0`` ... with fixed command ids (a re-run re-sends them: the ones
already committed are answered by idempotency). Stdout carries one fact per line, flushed at
once (a SIGKILL may come right after):

- ``READY <head> <saga position>`` once the engine is open;
- ``PLACED <order id>`` per acknowledged order;
- ``SAGA <position> <issued> <state>`` every few milliseconds, from a monitor thread;
- ``DONE`` once every order is placed and the saga has settled; then it waits to be killed;
- ``STUCK <status>`` instead if the saga did not settle in time, ``ERR ...`` on any failure (the
  parent fails at once with it, rather than waiting for a line that will not come).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from typing import Any

import structlog

from actors import Engine
from examples.inventory import PlaceOrder, ReceiveStock, inventory_options

_lock = threading.Lock()
_WINDOW = 16  # orders in flight at once


def emit(*fields: object) -> None:
    """Print one line and flush it at once."""
    with _lock:
        sys.stdout.write(" ".join(map(str, fields)) + "\n")
        sys.stdout.flush()


def monitor(engine: Engine, stop: threading.Event) -> None:
    """Print the saga's progress every few milliseconds until ``stop`` is set."""
    while not stop.wait(0.003):  # a reporting interval, not synchronisation
        try:
            status = engine.status().sagas["fulfilment"]
        except Exception as error:
            emit("ERR", "monitor", repr(error).replace("\n", " "))
            return
        emit("SAGA", status.position, status.issued, status.state)


def placed(order_id: str) -> Any:
    """Return a done-callback printing the order's acknowledgement."""

    def done(future: Any) -> None:
        try:
            future.get(timeout=0)
        except Exception as error:
            emit("ERR", order_id, repr(error).replace("\n", " "))
            return
        emit("PLACED", order_id)

    return done


def main(path: str, orders: int) -> None:
    """Place every order (again), let the saga run, and wait to be killed."""
    engine = Engine.open(path, durability="async", **inventory_options())
    emit("READY", engine.store.head(), engine.status().sagas["fulfilment"].position)
    stop = threading.Event()
    threading.Thread(target=monitor, args=(engine, stop), daemon=True).start()
    engine.execute(ReceiveStock(sku="kettle", quantity=orders // 2, command_id="receive-kettle"))
    in_flight: deque[Any] = deque()
    for number in range(orders):
        order_id = f"so-{number}"
        command = PlaceOrder(
            order_id=order_id, sku="kettle", quantity=1, command_id=f"place-{order_id}"
        )
        future = engine.submit(command, timeout=30)
        future.add_done_callback(placed(order_id))
        in_flight.append(future)
        while len(in_flight) > _WINDOW:
            in_flight.popleft().get(timeout=30)
    for future in in_flight:
        future.get(timeout=30)
    if engine.wait_for_sagas(timeout=60):
        emit("DONE")
    else:
        emit("STUCK", repr(engine.status().sagas["fulfilment"]).replace("\n", " "))
    sys.stdin.readline()  # wait for the parent's kill (or its closing our stdin)
    stop.set()
    engine.close()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    try:
        main(sys.argv[1], int(sys.argv[2]))
    except BaseException as failure:
        # The engine's actor threads are not daemons: without this exit, a failure here would
        # leave a silent process behind rather than a line the parent can report.
        emit("ERR", "main", repr(failure).replace("\n", " "))
        os._exit(1)
