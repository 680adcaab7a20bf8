"""Benchmark of the store against raw py-lmdb + msgspec doing the same work, in the same run.

* append: ``EventStore.append_batch`` with batches of 1 / 10 / 100 / 1000 one-event appends over
  many streams, in both durability modes, next to raw py-lmdb doing the same puts (encode the
  envelope, log put with append=True, stream-index put, head put) in one txn per batch.
* scan: ``EventStore.read_all`` over 1M events (``--quick``: 100k) next to a raw cursor scan
  with one msgspec decode per record (a single typed decoder over the same bytes).

Each figure is the median of 3 runs and is reported with its ratio to the raw reference.
Aims: batched append >= 50% of raw, scan+decode >= 70% of raw.

Usage: ``python bench/bench_store.py [--quick] [--json FILE]``; results go to
``bench/results/bench_store.json`` by default. ``run(quick)`` returns the same dict.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Union

import lmdb
import msgspec

from domain.orders import ORDERS, OrderEvent, OrderItemAdded
from store import Codec, EventStore, StreamAppend

RESULTS = pathlib.Path(__file__).parent / "results"
RUNS = 3
STREAMS = 1000
BATCH_SIZES = (1, 10, 100, 1000)


class RawRecord(msgspec.Struct, array_like=True, gc=False):
    """The envelope as a hand-written reader would decode it: one typed decoder."""

    position: int
    stream_id: str
    stream_type: str
    version: int
    tag: str
    schema_version: int
    timestamp: int
    command_id: str
    event: Union[OrderEvent]  # noqa: UP007 - the union alias, spelled as msgspec reads it


def _event(i: int) -> OrderItemAdded:
    return OrderItemAdded(
        order_id=f"order-{i % STREAMS:06d}",
        product_id=f"sku-{i % 97:03d}",
        quantity=1 + i % 5,
        price=Decimal("19.99"),
    )


def _median_rate(fn: Callable[[], tuple[int, float]]) -> float:
    rates = []
    for _ in range(RUNS):
        count, seconds = fn()
        rates.append(count / seconds)
    return statistics.median(rates)


# ---------------------------------------------------------------- append


def _store_append(durability: str, batch: int, total: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as directory:
        store = EventStore.open(
            directory,
            codec=Codec(ORDERS.event_types),
            durability="sync" if durability == "sync" else "async",
        )
        try:
            versions = [0] * STREAMS
            events = [_event(i) for i in range(total)]
            started = time.perf_counter()
            for offset in range(0, total, batch):
                appends = []
                for i in range(offset, min(offset + batch, total)):
                    stream = i % STREAMS
                    appends.append(
                        StreamAppend(
                            stream_id=f"order-{stream:06d}",
                            stream_type="order",
                            expected_version=versions[stream],
                            events=(events[i],),
                        )
                    )
                    versions[stream] += 1
                store.append_batch(appends)
            seconds = time.perf_counter() - started
        finally:
            store.close()
    return total, seconds


def _raw_append(durability: str, batch: int, total: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as directory:
        env = lmdb.open(
            directory,
            map_size=2**30,
            max_dbs=8,
            sync=durability == "sync",
            metasync=True,
            lock=True,
        )
        try:
            log_db = env.open_db(b"log")
            # The store's packed stream index: one key per stream, a 12-byte entry per event.
            index_db = env.open_db(b"index", dupsort=True, dupfixed=True)
            heads_db = env.open_db(b"heads")
            encoder = msgspec.msgpack.Encoder()
            versions = [0] * STREAMS
            events = [_event(i) for i in range(total)]
            now = time.time_ns()
            started = time.perf_counter()
            position = 0
            for offset in range(0, total, batch):
                with env.begin(write=True) as txn:
                    for i in range(offset, min(offset + batch, total)):
                        stream = i % STREAMS
                        stream_id = f"order-{stream:06d}"
                        versions[stream] += 1
                        version = versions[stream]
                        position += 1
                        key = position.to_bytes(8, "big")
                        value = encoder.encode(
                            (
                                position,
                                stream_id,
                                "order",
                                version,
                                "OrderItemAdded",
                                1,
                                now,
                                "",
                                events[i],
                            )
                        )
                        if not txn.put(key, value, append=True, db=log_db):
                            raise RuntimeError("append refused")
                        stream_key = stream_id.encode()
                        txn.put(stream_key, version.to_bytes(4, "big") + key, db=index_db)
                        txn.put(stream_key, version.to_bytes(8, "big"), db=heads_db)
            seconds = time.perf_counter() - started
        finally:
            env.close()
    return total, seconds


def bench_append(quick: bool) -> list[dict[str, Any]]:
    """Return one row per (durability, batch size)."""
    rows = []
    for durability in ("sync", "async"):
        for batch in BATCH_SIZES:
            # Enough commits to time, few enough that fsync-per-event runs stay short.
            if durability == "sync":
                total = {1: 300, 10: 2_000, 100: 10_000, 1000: 30_000}[batch]
            else:
                total = {1: 5_000, 10: 20_000, 100: 50_000, 1000: 100_000}[batch]
            if quick:
                total = max(total // 2, batch * 5)
            ours = _median_rate(functools.partial(_store_append, durability, batch, total))
            raw = _median_rate(functools.partial(_raw_append, durability, batch, total))
            rows.append(
                {
                    "durability": durability,
                    "batch": batch,
                    "events": total,
                    "store_eps": round(ours),
                    "raw_eps": round(raw),
                    "ratio": round(ours / raw, 3),
                }
            )
    return rows


# ---------------------------------------------------------------- scan


def _fill(directory: str, total: int, *, compressed: bool = False) -> None:
    """Write ``total`` events; ``compressed``: train a dictionary after the first 10k, as the
    engine's housekeeping does (store._training), so the rest are stored compressed."""
    with EventStore.open(directory, codec=Codec(ORDERS.event_types), durability="async") as store:
        versions = [0] * STREAMS
        for offset in range(0, total, 1000):
            if compressed and offset == 10_000:
                store.train_dictionary()
            appends = []
            for i in range(offset, min(offset + 1000, total)):
                stream = i % STREAMS
                appends.append(
                    StreamAppend(
                        stream_id=f"order-{stream:06d}",
                        stream_type="order",
                        expected_version=versions[stream],
                        events=(_event(i),),
                    )
                )
                versions[stream] += 1
            store.append_batch(appends)


def _store_scan(directory: str) -> tuple[int, float]:
    with EventStore.open(directory, codec=Codec(ORDERS.event_types), durability="async") as store:
        started = time.perf_counter()
        count = 0
        for batch in store.read_all(batch_size=1000):
            count += len(batch)
        return count, time.perf_counter() - started


def _raw_scan(directory: str) -> tuple[int, float]:
    env = lmdb.open(directory, max_dbs=16, readonly=True, lock=True)
    try:
        log_db = env.open_db(b"log", create=False)
        decode = msgspec.msgpack.Decoder(RawRecord).decode
        started = time.perf_counter()
        count = 0
        with env.begin(db=log_db) as txn:
            for value in txn.cursor().iternext(keys=False, values=True):
                decode(value)
                count += 1
        return count, time.perf_counter() - started
    finally:
        env.close()


def bench_scan(quick: bool) -> dict[str, Any]:
    """Return the scan rows: store read_all vs a raw cursor scan with one decode per record.

    The raw scan reads plain records; the store scans a plain log and, labelled, a compressed
    one (the engine's logs are compressed past 10k events: see store._frames).
    """
    total = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as directory:
        _fill(directory, total)
        ours = _median_rate(functools.partial(_store_scan, directory))
        raw = _median_rate(functools.partial(_raw_scan, directory))
    with tempfile.TemporaryDirectory() as directory:
        _fill(directory, total, compressed=True)
        packed = _median_rate(functools.partial(_store_scan, directory))
    return {
        "events": total,
        "store_eps": round(ours),
        "raw_eps": round(raw),
        "ratio": round(ours / raw, 3),
        "compressed_store_eps": round(packed),
        "compressed_ratio": round(packed / raw, 3),
    }


# ---------------------------------------------------------------- report


def run(quick: bool) -> dict[str, Any]:
    """Run the whole benchmark and return its results (what ``--json`` writes)."""
    started = time.perf_counter()
    append = bench_append(quick)
    scan = bench_scan(quick)
    batched = [row["ratio"] for row in append if row["batch"] >= 100]
    return {
        "subject": "store",
        "quick": quick,
        "runs": RUNS,
        "python": sys.version.split()[0],
        "lmdb": lmdb.__version__,
        "msgspec": msgspec.__version__,
        "append": append,
        "scan": scan,
        "aims": {
            "batched_append_ratio_min": 0.5,
            "batched_append_ratio": min(batched),
            "scan_ratio_min": 0.7,
            "scan_ratio": scan["ratio"],
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def _table(results: dict[str, Any]) -> str:
    lines = [
        f"{'workload':<26}{'events':>9}{'store ev/s':>13}{'raw ev/s':>13}{'ratio':>8}",
        "-" * 69,
    ]
    for row in results["append"]:
        name = f"append {row['durability']} batch {row['batch']}"
        lines.append(
            f"{name:<26}{row['events']:>9}{row['store_eps']:>13,}{row['raw_eps']:>13,}"
            f"{row['ratio']:>8.2f}"
        )
    scan = results["scan"]
    lines.append(
        f"{'scan + decode':<26}{scan['events']:>9}{scan['store_eps']:>13,}{scan['raw_eps']:>13,}"
        f"{scan['ratio']:>8.2f}"
    )
    lines.append(
        f"{'scan, compressed log':<26}{scan['events']:>9}{scan['compressed_store_eps']:>13,}"
        f"{scan['raw_eps']:>13,}{scan['compressed_ratio']:>8.2f}"
    )
    aims = results["aims"]
    lines.append(
        f"aims: batched append >= 0.50 (min {aims['batched_append_ratio']:.2f}), "
        f"scan >= 0.70 ({aims['scan_ratio']:.2f}); {results['seconds']} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, well under a minute")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="write results here")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    print(_table(results))
    target: pathlib.Path = args.json or RESULTS / "bench_store.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
