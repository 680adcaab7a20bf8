"""Soak: the default engine taking events until 10M, reporting throughput, RSS and bytes over time.

Workload: orders arrive in waves of :data:`WAVE` orders; each wave's commands (create, 8 add-items,
ship or cancel: 10 commands and 10 events per order) are interleaved across its orders and
submitted with the engine's backpressure, then the next wave comes. Commands are built lazily, so
the benchmark's own memory stays flat. 10M events are a million orders: ten times the default
``max_live_aggregates`` (100k), so the LRU keeps passivating once the cap is reached.

Engine: ``Engine.open(path)`` as the README shows it (durable, the four order views);
``--projection process`` soaks ``Engine.open(path, projection="process")`` instead (labelled),
its RSS then being the engine's and its projection process's together; ``--no-views`` soaks the
write side alone (``views=[]``, labelled), to tell its decline from the views'; ``--max-view-lag N``
soaks ``Engine.open(path, max_view_lag=N)`` (labelled): the writers wait while the views are
more than N events behind, so commands/s is what the engine sustains with its views current.

Every ``--every`` events (default 100k) it records the window's commands/s, the events/s the
slowest view applied in it (commands/s holds at the end only if that keeps up: the lag column
says how far behind the views are), the process's anonymous RSS (``/proc/self/statm``: the LMDB
maps are file-backed and stay out), the live aggregates, and the bytes per event on disk (LMDB
pages in use over both environments, and the files' allocated size), and the CPU cores the
process used in the window, user and system (``/proc/self/stat``; with its projection process's
in that mode): near one core of user time with a core to spare, the process is bound by its GIL.
It prints a table of the checkpoints, writes JSON and a chart.

Aims (issue 13): throughput at the end >= 0.8x the throughput at 100k events; RSS flat once the
live-aggregate cap is reached (reported as the RSS growth from the first checkpoint past the cap to
the end).

Run: ``python bench/bench_soak.py [--events N] [--every N] [--projection MODE] [--json FILE]
[--chart FILE]``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from _common import (
    RESULTS_DIR,
    configure_logging,
    cpu_seconds,
    progress,
    rss_anon_bytes,
    write_json,
)
from _workload import order_waves
from rich.console import Console
from rich.table import Table

from actors import Engine
from domain.orders import OrderCommand

__all__ = ["main", "run"]

WAVE: Final = 10_000  # orders per wave: 100k commands
ADDS: Final = 8
THROUGHPUT_AIM: Final = 0.8


def commands(total_events: int) -> Iterator[OrderCommand]:
    """Yield waves of interleaved order commands until ``total_events`` (10 per order).

    Each wave's ids come after the wave before's (:func:`_workload.order_waves`). Until
    2026-12-07 every wave's ids restarted at the same instant and landed amid all the earlier
    waves' keys: the soak measured a random-insert load there.
    """
    return itertools.islice(order_waves(None, WAVE, ADDS), total_events)


def _pages_bytes(env: Any) -> int:
    # The high-water mark of the pages LMDB allocated (safe on an environment in use: no
    # table handle is opened, unlike a per-table stat()).
    return int((env.info()["last_pgno"] + 1) * env.stat()["psize"])


def _checkpoint(
    engine: Engine, path: Path, events: int, seconds: float, window: float
) -> dict[str, Any]:
    status = engine.status()
    child = status.projection.pid if status.projection is not None else 0
    engine_rss = rss_anon_bytes()
    child_rss = rss_anon_bytes(child) if child else 0
    used = _pages_bytes(engine.store.env)
    views_used = _pages_bytes(engine._view_store.env)  # noqa: SLF001 - a benchmark's probe
    user, system = cpu_seconds()
    if child:
        child_user, child_system = cpu_seconds(child)
        user, system = user + child_user, system + child_system
    on_disk = (path / "data.mdb").stat().st_blocks * 512
    views_disk = (path / "views" / "data.mdb").stat().st_blocks * 512
    return {
        "events": events,
        "elapsed_s": seconds,
        "commands_per_s": window,
        "rss_anon_mib": (engine_rss + child_rss) / 2**20,
        "engine_rss_anon_mib": engine_rss / 2**20,
        "projection_rss_anon_mib": child_rss / 2**20,
        "live_aggregates": status.live_aggregates,
        "bytes_used_per_event": (used + views_used) / max(events, 1),
        "bytes_on_disk_per_event": (on_disk + views_disk) / max(events, 1),
        "view_lag_events": max((v.lag_events for v in status.views.values()), default=0),
        # The slowest view's position: with the previous checkpoint's, the rate the views kept.
        "views_position": min((v.position for v in status.views.values()), default=events),
        # CPU seconds so far (the engine's process and its projection process): per window,
        # cores used (see _window_rates).
        "cpu_user_s": user,
        "cpu_system_s": system,
    }


def _window_rates(points: list[dict[str, Any]], cpu_start: tuple[float, float]) -> None:
    """Set the last checkpoint's rates over its window (since the checkpoint before).

    ``views_events_per_s``: what the slowest view applied per second. A load the views cannot
    follow shows here: commands/s then holds only because the views' work is left for later
    (the lag column grows), and the rate the engine sustains with its views is this one.
    ``cpu_user_cores`` / ``cpu_system_cores``: CPU seconds per second; a process bound by its
    GIL sits near one core of user time whatever the machine has spare.
    """
    last = points[-1]
    before = (
        points[-2]
        if len(points) > 1
        else {
            "views_position": 0,
            "elapsed_s": 0.0,
            "cpu_user_s": cpu_start[0],
            "cpu_system_s": cpu_start[1],
        }
    )
    seconds = last["elapsed_s"] - before["elapsed_s"]
    applied = last["views_position"] - before["views_position"]
    last["views_events_per_s"] = applied / seconds if seconds > 0 else 0.0
    for key in ("user", "system"):
        used = last[f"cpu_{key}_s"] - before[f"cpu_{key}_s"]
        last[f"cpu_{key}_cores"] = used / seconds if seconds > 0 else 0.0


def run(
    total_events: int,
    every: int,
    projection: Literal["in-process", "process"] = "in-process",
    *,
    views: bool = True,
    max_view_lag: int | None = None,
) -> dict[str, Any]:
    """Soak the default engine (in ``projection`` mode, without views, or with a lag bound)."""
    configure_logging()
    points: list[dict[str, Any]] = []
    started = time.perf_counter()
    cpu_start = cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        path = Path(tmp) / "data"
        options: dict[str, Any] = {} if views else {"views": []}
        if max_view_lag is not None:
            options["max_view_lag"] = max_view_lag
        with Engine.open(path, projection=projection, **options) as engine:
            pending: list[Any] = []
            window_start = time.perf_counter()
            done = 0
            for command in commands(total_events):
                pending.append(engine.submit(command, timeout=600))
                if len(pending) >= every:
                    for future in pending:
                        future.get(timeout=600)
                    done += len(pending)
                    pending.clear()
                    now = time.perf_counter()
                    rate = every / (now - window_start)
                    points.append(_checkpoint(engine, path, done, now - started, rate))
                    _window_rates(points, cpu_start)
                    progress(
                        f"soak: {done:,} events, {rate:,.0f} cmd/s, "
                        f"RSS {points[-1]['rss_anon_mib']:.0f} MiB, "
                        f"{points[-1]['bytes_used_per_event']:.0f} B/event"
                    )
                    window_start = time.perf_counter()
            for future in pending:
                future.get(timeout=600)
    return {
        "bench": "soak",
        "projection": projection,
        "views": "default" if views else "none (views=[], labelled: not the default)",
        "max_view_lag": max_view_lag,
        "events": total_events,
        "every": every,
        "seconds": time.perf_counter() - started,
        "points": points,
        "verdicts": _verdicts(points),
    }


def _verdicts(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if len(points) < 2:
        return {}
    first, last = points[0], points[-1]
    ratio = last["commands_per_s"] / first["commands_per_s"]
    capped = [p for p in points if p["live_aggregates"] >= 100_000]
    rss_growth = capped[-1]["rss_anon_mib"] - capped[0]["rss_anon_mib"] if capped else None
    return {
        "throughput_end_vs_first": ratio,
        "throughput_aim_met": ratio >= THROUGHPUT_AIM,
        "rss_growth_after_cap_mib": rss_growth,
        # Commands/s at the end holds only if the views kept up: the lag they ended with, and
        # the rate they applied over the last quarter of the run against the first checkpoint's.
        "view_lag_end_events": last["view_lag_events"],
        "views_rate_last_quarter_vs_first": _last_quarter_views_rate(points)
        / max(first.get("views_events_per_s", 0.0), 1.0),
    }


def _last_quarter_views_rate(points: Sequence[dict[str, Any]]) -> float:
    """Return the events/s the slowest view applied over the run's last quarter."""
    start = points[len(points) * 3 // 4 - 1] if len(points) >= 4 else points[0]
    end = points[-1]
    seconds = end["elapsed_s"] - start["elapsed_s"]
    applied = end.get("views_position", 0) - start.get("views_position", 0)
    return applied / seconds if seconds > 0 else 0.0


def _engine_label(result: dict[str, Any]) -> str:
    """Name the configuration soaked: the default engine, or the labelled variant."""
    mode = result.get("projection", "in-process")
    parts = [] if mode == "in-process" else [f'projection="{mode}"']
    if result.get("views", "default") != "default":
        parts.append("views=[]")
    if result.get("max_view_lag") is not None:
        parts.append(f"max_view_lag={result['max_view_lag']:,}")
    return ", ".join(parts) if parts else "default engine"


def print_points(result: dict[str, Any]) -> None:
    """Print the checkpoints and the verdicts as a table."""
    table = Table(title=f"soak, {_engine_label(result)} ({result['seconds']:.0f} s)")
    columns = ("events", "cmd/s", "views ev/s", "RSS MiB", "live", "B/event LMDB", "B/event disk")
    for column in (*columns, "lag", "CPU cores user+sys"):
        table.add_column(column, justify="right")
    for p in result["points"]:
        table.add_row(
            f"{p['events']:,}",
            f"{p['commands_per_s']:,.0f}",
            f"{p.get('views_events_per_s', 0.0):,.0f}",
            f"{p['rss_anon_mib']:.0f}",
            f"{p['live_aggregates']:,}",
            f"{p['bytes_used_per_event']:.0f}",
            f"{p['bytes_on_disk_per_event']:.0f}",
            f"{p['view_lag_events']:,}",
            f"{p.get('cpu_user_cores', 0.0):.2f}+{p.get('cpu_system_cores', 0.0):.2f}",
        )
    # Piped output would be cut to 80 columns: the table needs more.
    console = Console(width=max(Console().width, 130))
    console.print(table)
    console.print(result["verdicts"])


def chart(result: dict[str, Any], target: Path) -> Path:
    """Draw throughput, RSS and bytes per event against events written."""
    import matplotlib as mpl  # noqa: PLC0415 - heavy, and only needed here

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    points = result["points"]
    events = [p["events"] / 1e6 for p in points]
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for axis, key, label in zip(
        axes,
        ("commands_per_s", "rss_anon_mib", "bytes_used_per_event"),
        ("commands/s", "anonymous RSS (MiB)", "bytes per event (LMDB pages in use)"),
        strict=True,
    ):
        axis.plot(events, [p[key] for p in points], label=label)
        if key == "commands_per_s" and all("views_events_per_s" in p for p in points):
            # The rate the slowest view applied: below commands/s, the views fall behind.
            axis.plot(events, [p["views_events_per_s"] for p in points], label="views events/s")
            axis.legend()
        axis.set_ylabel(label)
        axis.grid(visible=True, alpha=0.3)
    axes[-1].set_xlabel("events written (millions)")
    fig.suptitle(f"Soak: {_engine_label(result)}, durable")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak, print its table, write its JSON and chart."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events to write")
    parser.add_argument("--every", type=int, default=100_000, help="events per checkpoint")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="results file")
    parser.add_argument("--chart", type=Path, default=RESULTS_DIR / "soak.png", metavar="FILE")
    parser.add_argument(
        "--projection",
        choices=("in-process", "process"),
        default="in-process",
        help="projection mode (default: in-process, as Engine.open(path) does)",
    )
    parser.add_argument(
        "--no-views", action="store_true", help="views=[]: the write side alone (labelled)"
    )
    parser.add_argument(
        "--max-view-lag",
        type=int,
        default=None,
        metavar="N",
        help="Engine.open(max_view_lag=N): writers wait while the views lag (labelled)",
    )
    args = parser.parse_args(argv)
    result = run(
        args.events,
        args.every,
        "process" if args.projection == "process" else "in-process",
        views=not args.no_views,
        max_view_lag=args.max_view_lag,
    )
    print_points(result)
    progress(f"wrote {write_json(result, args.json, 'soak.json')}")
    progress(f"wrote {chart(result, args.chart)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
