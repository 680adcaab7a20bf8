"""The benchmark report: runs every benchmark, prints one table, writes JSON and a chart.

Runs ``bench_store.run(quick)``, ``bench_engine.run(quick)``, ``bench_views.run(quick)``,
``bench_pipeline.run(quick)`` (the read pipeline as users run it), ``bench_http.run(quick)`` and
``bench_growth.run(quick)`` (cost as aggregates grow), ``bench_memory.run(quick)`` (the memory
views' bytes per order, live and restarted), ``bench_projection_process.run(quick)``
(the views in the engine's process or in a projection process, against ``views=[]``) and
``bench_cluster.run(quick)`` (shards on a local Ray against one engine), ``bench_gil.run(quick)``
(what a ``putmulti`` costs beside threads running Python)
in this process (the ``eventsourcing`` peer runs once and is shared by the engine and view
figures; the HTTP server runs in a subprocess), then prints one table: each figure, our value,
every reference measured in the same run, the ratios, the aim and whether it is met. Progress
goes to stderr, the table to stdout.

A benchmark that fails is reported (stderr, JSON ``errors``) and the others still run; the exit
code is then 1. Unmet aims do not change the exit code: they are findings, not failures.

Run: ``python bench/report.py [--quick] [--json FILE] [--chart FILE]``, or
``python main.py bench [--quick] [--json FILE] [--chart FILE]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bench_cluster
import bench_engine
import bench_gil
import bench_growth
import bench_http
import bench_memory
import bench_pipeline
import bench_projection_process
import bench_store
import bench_views
from _common import (
    REFERENCES,
    RESULTS_DIR,
    Figure,
    configure_logging,
    figure,
    print_figures,
    progress,
    write_json,
)

__all__ = ["draw_chart", "main", "store_figures"]

STORE_BATCHED_AIM = 0.5  # bench_store's aims: batched append >= 50% of raw, scan >= 70%
STORE_SCAN_AIM = 0.7


def store_figures(result: dict[str, Any]) -> list[Figure]:
    """Turn ``bench_store.run``'s result into figures (its raw py-lmdb runs are the limit)."""
    if "figures" in result:  # already in the common shape
        figures: list[Figure] = result["figures"]
        return figures
    figures = []
    for row in result.get("append", []):
        batched = row["batch"] >= 100
        ratio = row["store_eps"] / row["raw_eps"] if row["raw_eps"] else 0.0
        figures.append(
            figure(
                "store",
                f"append {row['durability']}, batch {row['batch']}",
                "events/s",
                float(row["store_eps"]),
                references={"limit": float(row["raw_eps"])},
                aim=f">= {STORE_BATCHED_AIM:.0%} of raw" if batched else "",
                met=ratio >= STORE_BATCHED_AIM if batched else None,
            )
        )
    scan = result.get("scan")
    if scan:
        ratio = scan["store_eps"] / scan["raw_eps"] if scan["raw_eps"] else 0.0
        figures.append(
            figure(
                "store",
                f"scan + decode, {scan['events'] // 1000}k events",
                "events/s",
                float(scan["store_eps"]),
                references={"limit": float(scan["raw_eps"])},
                aim=f">= {STORE_SCAN_AIM:.0%} of raw",
                met=ratio >= STORE_SCAN_AIM,
            )
        )
        if "compressed_store_eps" in scan:
            figures.append(
                figure(
                    "store",
                    f"scan + decode, {scan['events'] // 1000}k events, compressed log "
                    "(as the engine writes it past 10k events)",
                    "events/s",
                    float(scan["compressed_store_eps"]),
                    references={"limit": float(scan["raw_eps"])},
                    note="the limit scans plain records",
                )
            )
    return figures


def draw_chart(figures: Sequence[Figure], path: Path, title: str) -> Path:
    """Draw throughput (ours vs references) and latency panels as one PNG."""
    import matplotlib as mpl  # noqa: PLC0415 - heavy, and only needed here

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    rates = [f for f in figures if f["unit"].endswith("/s")]
    latencies = [f for f in figures if f["unit"] == "us"]
    rows = max(len(rates), len(latencies), 1)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(16, 2 + 0.42 * rows), gridspec_kw={"width_ratios": [3, 2]}
    )
    series = ("ours", *REFERENCES)
    colors = {"ours": "tab:blue", "limit": "tab:gray", "peer POPO": "tab:orange"}
    colors["peer SQLite"] = "tab:red"
    height = 0.8 / len(series)
    for index, name in enumerate(series):
        ys, xs = [], []
        for row, item in enumerate(rates):
            value = item["value"] if name == "ours" else item["references"].get(name)
            if value:
                ys.append(row + (index - (len(series) - 1) / 2) * height)
                xs.append(value)
        left.barh(ys, xs, height=height, label=name, color=colors[name])
    left.set_yticks(range(len(rates)), [f"{f['bench']}: {f['figure']}" for f in rates], fontsize=7)
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlabel("per second (log scale)")
    left.set_title("throughput vs references (same run)")
    left.legend(loc="lower right", fontsize=8)
    bars = right.barh(
        range(len(latencies)),
        [f["value"] for f in latencies],
        color=["tab:red" if f["met"] is False else "tab:blue" for f in latencies],
    )
    right.bar_label(bars, labels=[f"{f['value']:,.0f}" for f in latencies], fontsize=6)
    right.set_yticks(
        range(len(latencies)), [f"{f['bench']}: {f['figure']}" for f in latencies], fontsize=7
    )
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("microseconds (log scale; red: aim missed)")
    right.set_title("latency")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _run_all(
    quick: bool,
) -> tuple[list[Figure], dict[str, Any], dict[str, str]]:
    benches: list[tuple[str, Callable[[bool], Any], Callable[[Any], list[Figure]]]] = [
        ("store", bench_store.run, store_figures),
        ("engine", bench_engine.run, lambda r: list(r["figures"])),
        ("views", bench_views.run, lambda r: list(r["figures"])),
        ("pipeline", bench_pipeline.run, lambda r: list(r["figures"])),
        ("http", bench_http.run, lambda r: list(r["figures"])),
        ("growth", bench_growth.run, lambda r: list(r["figures"])),
        ("memory", bench_memory.run, lambda r: list(r["figures"])),
        ("projection", bench_projection_process.run, lambda r: list(r["figures"])),
        ("cluster", bench_cluster.run, lambda r: list(r["figures"])),
        ("gil", bench_gil.run, lambda r: list(r["figures"])),
    ]
    figures: list[Figure] = []
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, run, to_figures in benches:
        progress(f"=== {name} {'(quick)' if quick else ''}")
        started = time.perf_counter()
        try:
            result = run(quick)
            figures.extend(to_figures(result))
        except Exception as error:
            errors[name] = "".join(traceback.format_exception_only(error)).strip()
            progress(f"{name} FAILED: {errors[name]}")
            traceback.print_exc(file=sys.stderr)
            continue
        results[name] = result
        progress(f"=== {name} done in {time.perf_counter() - started:.1f} s")
    return figures, results, errors


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark; print one table; write JSON and a chart. Returns the exit code."""
    parser = argparse.ArgumentParser(prog="report.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (< 1 min)")
    parser.add_argument(
        "--json", type=Path, default=RESULTS_DIR / "report.json", metavar="FILE", help="results"
    )
    parser.add_argument(
        "--chart", type=Path, default=RESULTS_DIR / "report.png", metavar="FILE", help="PNG chart"
    )
    args = parser.parse_args(argv)
    configure_logging()
    started = time.perf_counter()
    figures, results, errors = _run_all(args.quick)
    seconds = time.perf_counter() - started
    title = (
        f"benchmarks{' (quick)' if args.quick else ''}: {seconds:.0f} s, "
        f"Python {platform.python_version()}, {platform.machine()}"
    )
    print_figures(figures, title)
    missed = [f"{f['bench']}: {f['figure']}" for f in figures if f["met"] is False]
    if missed:
        progress(f"{len(missed)} aim(s) not met: " + "; ".join(missed))
    report = {
        "quick": args.quick,
        "seconds": seconds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "figures": figures,
        "benches": results,
        "errors": errors,
    }
    progress(f"wrote {write_json(report, args.json, 'report.json')}")
    try:
        progress(f"wrote {draw_chart(figures, args.chart, title)}")
    except Exception as error:  # the table and JSON are the results; a chart is a bonus
        progress(f"chart not drawn: {error!r}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
