"""Choosing the default ``snapshot_every`` by measurement: write cost against cold-load cost.

An aggregate snapshot is written every ``snapshot_every`` events of a stream; a passivated
aggregate (LRU cap, idle timeout, a restart) is loaded from its latest snapshot plus the events
after it. Fewer events between snapshots: cheaper loads, more snapshot writes. Measured for each
candidate (0 = no snapshots), same run, the engine as the README opens it (default views,
durable):

- **write**: commands/s, long streams (300 orders of 200 to 400 commands, quick: 100 of 100 to
  200: a create, then adds and removes of one line in turn, so the state stays small while the
  history grows), every command submitted then awaited;
- **cold load**: after a reopen (every aggregate cold), ``execute`` of one command per order,
  one at a time, with ``durability="async"`` so that no fsync hides the load: p50/p99 µs;
- **bytes**: the snapshots table's pages.

Reference: the same engine with ``snapshot_every=0`` (no snapshots). Medians of ``--rounds``.

Run: ``python bench/bench_snapshot_every.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from _common import (
    BenchResult,
    Figure,
    bench_main,
    configure_logging,
    figure,
    median_by_key,
    percentiles_us,
)
from _common import progress as say
from _workload import ids_in_sending_order, round_robin

from actors import Engine
from domain.orders import (
    AddOrderItem,
    Address,
    CreateOrder,
    OrderCommand,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)

__all__ = ["main", "run"]

BENCH: Final = "snapshot_every"
CANDIDATES: Final = (0, 25, 50, 100, 200, 400)
_ADDRESS: Final = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")
_PRICE: Final = Decimal("2.50")


def long_streams(orders: int, length: int, tag: str) -> list[list[OrderCommand]]:
    """Per order: a create, then commands adding and removing one line in turn.

    Lengths are drawn (seeded) between ``length // 2`` and ``length``, so the events after an
    order's last snapshot spread evenly over every candidate's interval, as for aggregates
    passivated at random moments (a fixed length would end every stream on a snapshot).
    """
    draw = random.Random(7)
    scripts = []
    for n in range(orders):
        order_id = f"{tag}-{n:05d}"
        size = draw.randint(length // 2, length)
        script: list[OrderCommand] = [
            CreateOrder(
                customer_id="customer-1",
                items=[OrderItem(product_id="base", quantity=1, price=_PRICE)],
                shipping_address=_ADDRESS,
                order_id=order_id,
            )
        ]
        for k in range(size - 1):
            product = f"p-{k // 2 % 7}"
            if k % 2 == 0:
                script.append(
                    AddOrderItem(order_id=order_id, product_id=product, quantity=1, price=_PRICE)
                )
            else:
                script.append(RemoveOrderItem(order_id=order_id, product_id=product))
        scripts.append(script)
    return scripts


def _one(every: int, orders: int, length: int) -> dict[str, float]:
    scripts = long_streams(orders, length, f"o{every}")
    commands = ids_in_sending_order(list(round_robin(scripts)))
    with tempfile.TemporaryDirectory(prefix="bench-snap-") as tmp:
        path = Path(tmp)
        with Engine.open(path, snapshot_every=every) as engine:
            began = time.perf_counter()
            futures = [engine.submit(command) for command in commands]
            for future in futures:
                future.get(timeout=600)
            rate = len(commands) / (time.perf_counter() - began)
            snapshot_pages = _snapshot_bytes(engine)
        with Engine.open(path, snapshot_every=every, durability="async") as engine:
            loads = []
            for script in scripts:
                command = ShipOrder(order_id=script[0].order_id)
                start = time.perf_counter()
                engine.execute(command, timeout=60)
                loads.append(time.perf_counter() - start)
    cold = percentiles_us(loads)
    return {
        "commands_per_s": rate,
        "cold_p50_us": cold["p50_us"],
        "cold_p99_us": cold["p99_us"],
        "snapshot_bytes": snapshot_pages,
    }


def _snapshot_bytes(engine: Engine) -> float:
    env = engine.store.env
    with env.begin() as txn:
        db = engine.store._dbs["snapshots"]  # noqa: SLF001 - a bench reads the table's size
        stat = txn.stat(db)
    pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
    return float(pages * stat["psize"])


def run(quick: bool = False) -> BenchResult:
    """Measure every candidate ``rounds`` times, taking turns; figures against ``0``."""
    configure_logging()
    started = time.perf_counter()
    orders, length, rounds = (100, 200, 1) if quick else (300, 400, 3)
    samples: dict[int, list[dict[str, float]]] = {every: [] for every in CANDIDATES}
    for round_ in range(rounds):
        for every in CANDIDATES:
            say(f"snapshot_every={every}: round {round_ + 1}/{rounds}, {orders} x {length}")
            samples[every].append(_one(every, orders, length))
    rows = {every: median_by_key(runs) for every, runs in samples.items()}
    base = rows[0]
    figures: list[Figure] = []
    for every, row in rows.items():
        if every == 0:
            continue
        label = f"snapshot_every={every}, {orders} orders x {length} commands"
        figures += [
            figure(
                BENCH,
                f"cmd/s durable, default views, {label}",
                "cmd/s",
                row["commands_per_s"],
                references={"no snapshots": base["commands_per_s"]},
            ),
            figure(
                BENCH,
                f"cold load + execute p50 (async), {label}",
                "us",
                row["cold_p50_us"],
                references={"no snapshots": base["cold_p50_us"]},
                higher_is_better=False,
                note=f"p99 {row['cold_p99_us']:,.0f} us; snapshots {row['snapshot_bytes']:,.0f} B",
            ),
        ]
    return BenchResult(
        bench=BENCH,
        quick=quick,
        seconds=time.perf_counter() - started,
        config={"orders": orders, "length": length, "rounds": rounds},
        figures=figures,
        raw={"rows": {str(k): v for k, v in rows.items()}, "samples": _plain(samples)},
    )


def _plain(samples: dict[int, list[dict[str, float]]]) -> dict[str, Any]:
    return {str(every): runs for every, runs in samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``[--quick] [--json FILE]``."""
    return bench_main(
        run,
        doc=__doc__,
        title="snapshot_every",
        default_name="snapshot_every.json",
        quick_help="100 orders x 200 commands, one round",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
