"""Helpers shared by the benchmark scripts: timing, medians, figures, tables, JSON, memory.

Every benchmark's ``run(quick)`` returns a :class:`BenchResult`: its headline
:class:`Figure` rows (our value, each reference measured in the same run, ratios, the aim and
whether it is met) plus whatever raw measurements it wants to keep. ``report.py`` prints all the
figures as one table and charts them.

Reference columns are fixed (:data:`REFERENCES`) so that one table holds every benchmark:
``limit`` is the same work in one thread without actors (or the raw scan for reads; for HTTP, the
same requests through the Python API at the same concurrency), ``peer POPO`` and ``peer SQLite``
are the ``eventsourcing`` library on its two stores.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NotRequired, TypedDict, TypeVar

import msgspec
import structlog
from peer_eventsourcing import run_peer
from rich.console import Console
from rich.table import Table

__all__ = [
    "REFERENCES",
    "RESULTS_DIR",
    "BenchResult",
    "Figure",
    "bench_main",
    "configure_logging",
    "cpu_seconds",
    "deep_size",
    "figure",
    "fmt_value",
    "median_by_key",
    "paced",
    "paced_latencies",
    "peer",
    "percentiles_us",
    "print_figures",
    "progress",
    "rss_anon_bytes",
    "timed",
    "write_json",
]

T = TypeVar("T")

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
"""Where results go unless told otherwise (git-ignored)."""

TABLE_WIDTH: Final = 170

REFERENCES: Final = ("limit", "peer POPO", "peer SQLite")
"""The reference columns of the table, in order."""


class Figure(TypedDict):
    """One headline figure with its same-run references.

    ``ratios`` maps a reference name to ``value / reference`` (only for references measured).
    ``met`` is None when the figure has no aim. ``higher_is_better`` tells the chart and the
    ratio reader which way is good.
    """

    bench: str
    figure: str
    unit: str
    value: float
    references: dict[str, float]
    ratios: dict[str, float]
    aim: str
    met: bool | None
    higher_is_better: bool
    note: NotRequired[str]


class BenchResult(TypedDict):
    """What every benchmark's ``run(quick)`` returns."""

    bench: str
    quick: bool
    seconds: float
    config: dict[str, Any]
    figures: list[Figure]
    raw: dict[str, Any]


def configure_logging() -> None:
    """Keep the engine's per-batch INFO logs out of the measurement (WARNING and up, stderr).

    Benchmarks are scripts, so they may configure logging; a rendered log line costs as much
    as storing an event.
    """
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def progress(message: str) -> None:
    """Print a progress line to stderr (stdout carries only the table)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def timed(work: Callable[[], T]) -> tuple[T, float]:
    """Run ``work`` after a full collection; return its result and its wall-clock seconds."""
    gc.collect()
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def median_by_key(samples: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Return the per-key median of equally keyed samples."""
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


def percentiles_us(seconds: Sequence[float]) -> dict[str, float]:
    """Return p50 and p99 of latency samples (in seconds) as microseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"p50_us": 0.0, "p99_us": 0.0, "samples": 0.0}

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6

    return {"p50_us": at(0.50), "p99_us": at(0.99), "samples": float(len(ordered))}


def paced(rate: float, stop: threading.Event | None = None) -> Iterator[float]:
    """Yield ``rate`` ticks per second from now, each once it is due, as its scheduled time.

    Paced by the clock, not by the caller: a tick already late is yielded at once. Ends when
    ``stop`` is set (looked at before each tick; its wait is also the pacing, so setting it
    cuts a pause short).
    """
    pause = threading.Event() if stop is None else stop
    started = time.perf_counter()
    for i in itertools.count():
        if pause.is_set():
            return
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            pause.wait(delay)
        yield due


def paced_latencies(ask: Callable[[int], object], rate: float, seconds: float) -> list[float]:
    """Call ``ask(i)`` at ``rate`` per second for ``seconds``; return each call's latency.

    Open loop: each latency runs from the call's scheduled time, not from when the caller got
    round to it, so time spent waiting for the CPU or the GIL after the pause counts, and a
    slow call delays (and is charged to) the calls behind it.
    """
    latencies: list[float] = []
    for i, due in zip(range(int(rate * seconds)), paced(rate), strict=False):
        ask(i)
        latencies.append(time.perf_counter() - due)
    return latencies


def _children(obj: object) -> Iterable[object]:
    if isinstance(obj, msgspec.Struct):
        return (getattr(obj, name) for name in obj.__struct_fields__)
    if isinstance(obj, tuple | list):
        return obj
    if isinstance(obj, dict):
        return (*obj.keys(), *obj.values())
    return ()


def deep_size(roots: Iterable[object], exclude: Iterable[object] = ()) -> int:
    """Return the bytes of every object reachable from ``roots``, each counted once.

    Objects reachable from ``exclude`` are not counted (nor walked into).
    """
    seen: set[int] = set()
    stack = list(exclude)
    while stack:  # mark what is shared with objects that exist anyway
        obj = stack.pop()
        if id(obj) not in seen:
            seen.add(id(obj))
            stack.extend(_children(obj))
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(_children(obj))
    return total


def rss_anon_bytes(pid: int | None = None) -> int:
    """Return a process's anonymous resident memory (``resident - shared`` of statm).

    The LMDB map is file-backed and counted as shared, so the log itself stays out of it.

    Args:
        pid: The process (None: this one).
    """
    fields = Path(f"/proc/{pid or 'self'}/statm").read_text().split()
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int | None = None) -> tuple[float, float]:
    """Return a process's CPU time so far: (user, system) seconds, all its threads.

    Over a window, user seconds per second near 1.0 with a core idle is a process bound by
    its GIL (one thread runs Python at a time).

    Args:
        pid: The process (None: this one).
    """
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks  # utime, stime


_PEER_CACHE: dict[tuple[int, str, int], dict[str, float]] = {}


def peer(orders: int, store: str, adds_per_order: int) -> dict[str, float]:
    """Run the ``eventsourcing`` peer (once per process and arguments: the report shares it)."""
    key = (orders, store, adds_per_order)
    if key not in _PEER_CACHE:
        progress(f"peer eventsourcing {store}: {orders} orders x {adds_per_order + 2} commands")
        _PEER_CACHE[key] = run_peer(orders, "popo" if store == "popo" else "sqlite", adds_per_order)
    return _PEER_CACHE[key]


def figure(
    bench: str,
    name: str,
    unit: str,
    value: float,
    *,
    references: Mapping[str, float] | None = None,
    aim: str = "",
    met: bool | None = None,
    higher_is_better: bool = True,
    note: str = "",
) -> Figure:
    """Build a :class:`Figure`, computing ``value / reference`` for every reference given."""
    refs = dict(references or {})
    result = Figure(
        bench=bench,
        figure=name,
        unit=unit,
        value=value,
        references=refs,
        ratios={key: value / ref for key, ref in refs.items() if ref},
        aim=aim,
        met=met,
        higher_is_better=higher_is_better,
    )
    if note:
        result["note"] = note
    return result


def fmt_value(value: float, unit: str) -> str:
    """Format a value for the table: thousands separators, sensible precision."""
    if unit.endswith("/s") or unit in {"B", "events"}:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value else "0"


def _ratio_text(fig: Figure) -> str:
    short = {"limit": "limit", "peer POPO": "POPO", "peer SQLite": "SQLite"}
    return "\n".join(
        f"{ratio:.2f}x {short.get(name, name)}" for name, ratio in fig["ratios"].items()
    )


def print_figures(figures: Sequence[Figure], title: str, console: Console | None = None) -> None:
    """Print ``figures`` as one rich table to stdout."""
    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("bench")
    table.add_column("figure")
    table.add_column("ours", justify="right")
    for ref in REFERENCES:
        table.add_column(ref, justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("aim")
    table.add_column("met?", justify="center")
    for fig in figures:
        refs = fig["references"]
        met = fig["met"]
        table.add_row(
            fig["bench"],
            f"{fig['figure']} [dim]({fig['unit']})[/dim]"
            + (f"\n[dim]{fig['note']}[/dim]" if "note" in fig else ""),
            fmt_value(fig["value"], fig["unit"]),
            *(fmt_value(refs[ref], fig["unit"]) if ref in refs else "" for ref in REFERENCES),
            _ratio_text(fig),
            fig["aim"],
            "" if met is None else ("[green]yes[/green]" if met else "[red]NO[/red]"),
        )
    if console is None:
        # Piped output would be cut to 80 columns: the table needs more.
        console = Console(width=max(Console().width, TABLE_WIDTH))
    console.print(table)


def write_json(data: Mapping[str, Any], path: Path | None, default_name: str) -> Path:
    """Write ``data`` as JSON to ``path`` (default ``bench/results/<default_name>``)."""
    target = path if path is not None else RESULTS_DIR / default_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return target


def bench_main(
    run: Callable[[bool], BenchResult],
    *,
    doc: str | None,
    title: str,
    default_name: str,
    quick_help: str,
    argv: Sequence[str] | None = None,
) -> int:
    """The command line every bench script shares: ``[--quick] [--json FILE]``.

    Runs ``run(quick)``, prints its figures under ``title`` (with the run's seconds) and
    writes its JSON to ``--json`` or ``bench/results/<default_name>``.
    """
    import argparse  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="results file")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print_figures(result["figures"], f"{title} ({result['seconds']:.0f} s)")
    path = write_json(result, args.json, default_name)
    progress(f"wrote {path}")
    return 0
