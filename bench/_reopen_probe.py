"""A fresh process for ``bench_pipeline``'s reopen figure: ``Engine.open`` as a restarted service.

The figure's aim is the time from ``Engine.open`` until the four default queries answer with
``after=head``. A service that restarts opens its data directory in a new process. Timed in
the benchmark's own process just after a 1M-event catch-up, the first open of the directory ran
1.08-1.22 s against 0.66-0.78 s for the next opens there and for fresh processes: the same
work, ~0.4 s more CPU in the opening thread, for a cause not found (not the collector, not page
faults, not the page cache, no other thread). Both are reported; this one is the headline.

Protocol: ``python _reopen_probe.py PATH HEAD ORDER_ID CUSTOMER_ID`` opens the engine on
``PATH`` (the modules already imported, as in a running program), asks the four queries with
``after=HEAD``, and prints ``{"open_s", "answers_s"}`` as JSON.

Run by :func:`bench_pipeline.reopen_and_rebuild`; not a benchmark on its own.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

from _common import configure_logging
from bench_pipeline import default_queries, open_engine

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    """Time one reopen of ``argv[1]`` (see the module's protocol); return an exit code."""
    path, head, order_id, customer_id = argv[1], int(argv[2]), argv[3], argv[4]
    configure_logging()
    started = time.perf_counter()
    with open_engine(path, views=True) as engine:
        opened = time.perf_counter() - started
        default_queries(engine, order_id, customer_id, head)
        answered = time.perf_counter() - started
    print(json.dumps({"open_s": opened, "answers_s": answered}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
