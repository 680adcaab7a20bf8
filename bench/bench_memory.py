"""Memory per order of the default views: a live engine, and the same engine restarted.

Issue 13 asks for RSS flat once the live-aggregate cap is reached; the default engine's memory
views (``order_search``, ``order_stats``) hold every order by design, so what they cost per
order is the slope the soak shows past the cap. This benchmark isolates it, each measure in a
fresh process (``_memory_probe.py``), anonymous RSS after a full collection:

- **live**: the default engine takes N orders (10 commands each, in waves of 10k orders, as the
  soak sends them), its views applying every event; against ``views=[]`` doing the same;
- **restarted**: the default engine opened again on that directory (the memory views restored
  from the snapshots the live one left at close), then a few fresh orders and searches by id
  part, as a restarted service meets them; against ``views=[]`` opened on it.

Each figure is (RSS - its reference's RSS) / orders. The two LMDB views' row caches (262,144
rows per table) are in it, a bounded part.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from _common import BenchResult, Figure, bench_main, configure_logging, figure, progress
from _memory_probe import ADDS, WAVE

__all__ = ["run"]

BENCH: Final = "memory"
FULL_ORDERS: Final = 100_000
QUICK_ORDERS: Final = 10_000
_PROBE: Final = Path(__file__).resolve().parent / "_memory_probe.py"
_TIMEOUT: Final = 1800.0
# (measured, its reference, label)
_FIGURES: Final = (("write", "write-none", "live"), ("restart", "open-none", "restarted"))


def _probe(mode: str, path: str, orders: int) -> dict[str, float]:
    progress(f"memory: a fresh process, {mode}")
    done = subprocess.run(  # noqa: S603 - our own probe, by its path
        [sys.executable, str(_PROBE), mode, path, str(orders)],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool = False) -> BenchResult:
    """Measure the four processes; return the per-order figures."""
    configure_logging()
    started = time.perf_counter()
    orders = QUICK_ORDERS if quick else FULL_ORDERS
    raw: dict[str, Any] = {"orders": orders}
    with (
        tempfile.TemporaryDirectory(prefix="bench-memory-") as live,
        tempfile.TemporaryDirectory(prefix="bench-memory-none-") as none,
    ):
        raw["write-none"] = _probe("write-none", none, orders)
        raw["write"] = _probe("write", live, orders)
        raw["open-none"] = _probe("open-none", live, orders)
        raw["restart"] = _probe("restart", live, orders)
    figures: list[Figure] = []
    for mode, reference, label in _FIGURES:
        ours, base = raw[mode]["rss_bytes"], raw[reference]["rss_bytes"]
        figures.append(
            figure(
                BENCH,
                f"RSS per order of the default views, {label}, {orders // 1000}k orders",
                "B",
                (ours - base) / orders,
                higher_is_better=False,
                note=f"process RSS {ours / 2**20:,.0f} MiB, views=[] {base / 2**20:,.0f} MiB",
            )
        )
    return BenchResult(
        bench=BENCH,
        quick=quick,
        seconds=time.perf_counter() - started,
        config={"orders": orders, "commands_per_order": ADDS + 2, "wave": WAVE},
        figures=figures,
        raw=raw,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its table, write its JSON."""
    return bench_main(
        run,
        doc=__doc__,
        title="memory per order",
        default_name="memory.json",
        quick_help="10k orders",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
