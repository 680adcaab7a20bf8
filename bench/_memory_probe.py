"""A fresh process for ``bench_memory``: the engine's anonymous RSS in one situation.

Protocol: ``python _memory_probe.py MODE PATH ORDERS`` prints ``{"rss_bytes", "seconds"}`` as
JSON, measured after a full collection with the engine still open. ``MODE``:

- ``write`` / ``write-none``: the default views (or ``views=[]``) on an empty ``PATH``, then
  ``ORDERS`` orders of 10 commands sent in waves of 10k orders as the soak sends them (one
  wave's commands built at a time, all of a wave in flight), the views at the head;
- ``restart`` / ``open-none``: the default views (or ``views=[]``) opened on what ``write``
  left (the views restored from their snapshots), then what a restarted service meets: a few
  fresh orders and searches by id part (``restart`` only), the views at the head.

Run by :func:`bench_memory.run`; not a benchmark on its own.
"""

from __future__ import annotations

import gc
import itertools
import json
import sys
import time
from collections.abc import Sequence
from typing import Final

from _common import configure_logging, rss_anon_bytes
from _workload import order_waves, order_workload
from bench_pipeline import open_engine

from actors import Engine
from views.orders import GetOrderStats, SearchOrders

__all__ = ["ADDS", "WAVE", "main"]

WAVE: Final = 10_000  # orders per wave, as the soak
ADDS: Final = 8  # 10 commands per order, as the soak
_WAIT: Final = 600.0
_SEARCHES: Final = 70  # searches by id part: past the point where a restored index builds owners


def _write(engine: Engine, orders: int) -> None:
    commands = itertools.islice(order_waves(None, WAVE, ADDS), orders * (ADDS + 2))
    while wave := list(itertools.islice(commands, WAVE * (ADDS + 2))):
        futures = [engine.submit(command, timeout=300) for command in wave]
        for future in futures:
            future.get(timeout=300)


def _restarted(engine: Engine) -> None:
    last = 0
    for command in order_workload(10, ADDS, seed=7, start_ms=10**9):  # ids after the log's
        last = engine.execute(command).position
    engine.query(GetOrderStats(), after=last)
    for number in range(_SEARCHES):
        engine.query(SearchOrders(query=f"x{number:02d}"), after=last)
    # A restored search index builds the owners of its id texts off the query path after a few
    # searches by id part; there is no signal for it: give it time to land.
    time.sleep(2.0)


def main(argv: Sequence[str]) -> int:
    """Measure one engine (see the module's protocol); return an exit code."""
    mode, path, orders = argv[1], argv[2], int(argv[3])
    configure_logging()
    started = time.perf_counter()
    with open_engine(path, views=not mode.endswith("-none")) as engine:
        if mode.startswith("write"):
            _write(engine, orders)
        elif mode == "restart":
            _restarted(engine)
        if not engine.wait_for_views(timeout=_WAIT):
            print(json.dumps({"error": "the views never reached the head"}), flush=True)
            return 1
        seconds = time.perf_counter() - started
        gc.collect()
        rss = rss_anon_bytes()
    print(json.dumps({"rss_bytes": rss, "seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
