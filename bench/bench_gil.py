"""The GIL and py-lmdb: what one ``putmulti`` costs beside threads running Python.

py-lmdb lets go of the GIL around every LMDB call, ``putmulti`` and ``getmulti`` *per key*;
taking it back waits until the thread holding it lets go, at the latest after the interpreter's
switch interval. The engine's projector writes a row per event and LMDB view, its writer four
keys per event, while the aggregates, the callers and the other views run Python: this is the
building block behind the engine lowering the interval to 1 ms (``actors/_switching.py``; the
README's *the GIL and py-lmdb*).

Measured: one write transaction putting 500 keys of 280 bytes (an order row's size) with
``putmulti`` into a real LMDB environment (no sync, as the views environment commits), its wall
time and the thread's CPU time, median over the commits of each set-up; beside 0, 1 and 2
threads spinning in Python, at CPython's default 5 ms switch interval and at the engine's 1 ms.
The reference is the same commit alone (the limit). Each set-up runs up to 200 commits or 8 s
(quick: 40 or 2 s), whichever comes first.

Run: ``python bench/bench_gil.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import lmdb
from _common import BenchResult, Figure, bench_main, configure_logging, figure, progress

__all__ = ["run"]

BENCH: Final = "gil"
KEYS: Final = 500
VALUE_BYTES: Final = 280
INTERVALS: Final = (0.005, 0.001)  # CPython's default, the engine's
SPINNERS: Final = (0, 1, 2)


def _commits(env: lmdb.Environment, db: Any, most: int, seconds: float) -> dict[str, float]:
    """Time up to ``most`` commits (or ``seconds``); return median wall and CPU in ms."""
    value = os.urandom(VALUE_BYTES)
    walls: list[float] = []
    cpus: list[float] = []
    key = 0
    deadline = time.perf_counter() + seconds
    while len(walls) < most and (len(walls) < 3 or time.perf_counter() < deadline):
        keys = [(key + i).to_bytes(8, "big") for i in range(KEYS)]
        key += KEYS
        wall, cpu = time.perf_counter(), time.thread_time()
        with env.begin(write=True, db=db) as txn:
            txn.cursor(db=db).putmulti(zip(keys, [value] * KEYS, strict=True))
        walls.append((time.perf_counter() - wall) * 1e3)
        cpus.append((time.thread_time() - cpu) * 1e3)
    return {
        "wall_ms_p50": statistics.median(walls),
        "cpu_ms_p50": statistics.median(cpus),
        "commits": len(walls),
    }


def _spin(stop: threading.Event) -> None:
    count = 0
    while not stop.is_set():  # Python bytecode all along: holds the GIL until asked for it
        for _ in range(1000):
            count += 1


def _setup(path: str, spinners: int, interval: float, most: int, seconds: float) -> dict[str, Any]:
    env = lmdb.open(path, map_size=1 << 32, sync=False, metasync=False, max_dbs=2)
    db = env.open_db(b"rows")
    stop = threading.Event()
    threads = [threading.Thread(target=_spin, args=(stop,), daemon=True) for _ in range(spinners)]
    before = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        for thread in threads:
            thread.start()
        return _commits(env, db, most, seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        sys.setswitchinterval(before)
        env.close()


def run(quick: bool = False) -> BenchResult:
    """Measure every set-up; return one figure per set-up, against the commit alone."""
    configure_logging()
    started = time.perf_counter()
    most, seconds = (40, 2.0) if quick else (200, 8.0)
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gil-") as root:
        for interval in INTERVALS:
            for spinners in SPINNERS:
                name = f"{spinners} spinning, {interval * 1e3:g} ms"
                progress(f"gil: putmulti of {KEYS} keys beside {name}")
                path = str(Path(root) / f"{spinners}-{interval}")
                raw[name] = _setup(path, spinners, interval, most, seconds)
    alone = statistics.median(
        raw[f"0 spinning, {interval * 1e3:g} ms"]["wall_ms_p50"] for interval in INTERVALS
    )
    figures: list[Figure] = []
    for name, result in raw.items():
        figures.append(
            figure(
                BENCH,
                f"putmulti of {KEYS} keys, wall p50, {name} switch interval",
                "ms",
                result["wall_ms_p50"],
                references={"limit": alone},
                higher_is_better=False,
                note=f"thread CPU p50 {result['cpu_ms_p50']:.2f} ms; {result['commits']} commits",
            )
        )
    return BenchResult(
        bench=BENCH,
        quick=quick,
        seconds=time.perf_counter() - started,
        config={"keys": KEYS, "value_bytes": VALUE_BYTES, "most_commits": most},
        figures=figures,
        raw=raw,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its table, write its JSON."""
    return bench_main(
        run,
        doc=__doc__,
        title="the GIL and py-lmdb",
        default_name="gil.json",
        quick_help="fewer commits per set-up",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
