"""A reader process for ``bench_pipeline``: point queries from a ``ViewReader`` in its own process.

Reads that scale apart from writes (issue 9, item 4): the engine's process writes and searches,
while this process answers ``GetOrderById`` from the LMDB views environment with its own GIL.

Protocol, one line each way, so the parent measures only while its load runs:

1. the parent starts ``python _reader_probe.py PATH RATE SECONDS`` and writes the order ids (a
   JSON list) on stdin;
2. this process opens a ``ViewReader`` on ``PATH``, answers one query, prints ``ready``;
3. the parent starts its load, then writes ``go``;
4. this process asks ``RATE`` queries per second for ``SECONDS``, open loop
   (:func:`_common.paced_latencies`; ids picked with a stride, as the in-process figure does),
   and prints ``{"p50_us", "p99_us", "samples"}`` as JSON.

Run by :func:`_points.points_while_busy`; not a benchmark on its own.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from _common import paced_latencies, percentiles_us

from views import ViewReader
from views.orders import GetOrderById

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    """Answer point queries for the parent (see the module's protocol); return an exit code."""
    path, rate, seconds = argv[1], float(argv[2]), float(argv[3])
    ids: list[str] = json.loads(sys.stdin.readline())
    with ViewReader.open(path) as reader:
        reader.query(GetOrderById(ids[0]))
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 2

        def ask(i: int) -> object:
            return reader.query(GetOrderById(ids[(i * 7919) % len(ids)]))

        samples = paced_latencies(ask, rate, seconds)
    print(json.dumps(percentiles_us(samples)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
