"""Rich tables for what the engine answers: orders, pages, stats, status.

Everything here writes to the stdout console (data); progress and logs go to stderr elsewhere.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from actors import EngineStatus
from views.orders import OrderStats, OrderView, Page

__all__ = [
    "order_table",
    "page_table",
    "pairs_table",
    "progress_bar",
    "stats_table",
    "status_tables",
    "stdout_console",
]

# Piped output (files, tests, `| less`) gets a width that fits uuids instead of rich's 80.
_PIPED_WIDTH = 160


def stdout_console() -> Console:
    """Return the console for data: stdout, wide enough for ids when it is not a terminal."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=max(_PIPED_WIDTH, shutil.get_terminal_size().columns))


def progress_bar(*, disable: bool = False) -> Progress:
    """Return a progress bar drawn on stderr (stdout carries only data), removed when done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=disable,
    )


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def pairs_table(title: str, rows: Iterable[tuple[str, object]]) -> Table:
    """Return a two-column (field, value) table."""
    table = Table(title=title, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def order_table(title: str, order: OrderView | None) -> Table:
    """Return one order as a (field, value) table."""
    if order is None:
        return pairs_table(title, [("answer", "None (no such order)")])
    return pairs_table(
        title,
        [
            ("order_id", order.order_id),
            ("customer_id", order.customer_id),
            ("status", order.status),
            ("total_amount", order.total_amount),
            ("item_count", order.item_count),
            ("created_at", _when(order.created_at)),
            ("shipped_at", _when(order.shipped_at)),
        ],
    )


def page_table(title: str, page: Page[OrderView]) -> Table:
    """Return a page of orders, one row per order, with the page figures in the caption."""
    table = Table(
        title=title,
        title_justify="left",
        caption=f"page {page.page} of {page.total_pages} ({page.total} matching, "
        f"{page.page_size} per page)",
        caption_justify="left",
    )
    for name in ("order_id", "customer_id", "status"):
        table.add_column(name, no_wrap=True)
    for name in ("total_amount", "item_count"):
        table.add_column(name, justify="right")
    table.add_column("created_at", no_wrap=True)
    for order in page.items:
        table.add_row(
            order.order_id,
            order.customer_id,
            order.status,
            str(order.total_amount),
            str(order.item_count),
            _when(order.created_at),
        )
    return table


def stats_table(title: str, stats: OrderStats) -> Table:
    """Return the order statistics as a (field, value) table."""
    by_status = ", ".join(f"{status} {count}" for status, count in stats.by_status.items())
    top = ", ".join(f"{product} x{units}" for product, units in stats.top_products[:5])
    return pairs_table(
        title,
        [
            ("total_orders", stats.total_orders),
            ("by_status", by_status),
            ("revenue", stats.revenue),
            ("top_products", top or "-"),
        ],
    )


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB ({size} bytes)"


def _unix(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return _when(datetime.fromtimestamp(seconds, UTC))


def status_tables(status: EngineStatus) -> Sequence[Table]:
    """Return the engine status: one table of figures, one row per view."""
    figures = pairs_table(
        "Engine status",
        [
            ("head", status.head),
            ("durability", status.durability),
            ("live_aggregates", status.live_aggregates),
            ("parked_events", status.parked_events),
            ("in_flight", status.in_flight),
            ("queries_waiting", status.queries_waiting),
            ("file_size", _size(status.file_size)),
            ("idempotency_entries", status.idempotency_entries),
            ("idempotency_oldest", _unix(status.idempotency_oldest)),
            ("log_dictionary", status.log_dictionary or "none (records stored plain)"),
        ],
    )
    views = Table(title="Views", title_justify="left")
    views.add_column("view", style="bold", no_wrap=True)
    views.add_column("backend")
    for name in ("position", "lag_events", "lag_seconds", "parked", "skipped"):
        views.add_column(name, justify="right")
    views.add_column("state")
    views.add_column("error", overflow="fold")
    for name, view in status.views.items():
        views.add_row(
            name,
            view.backend,
            str(view.position),
            str(view.lag_events),
            f"{view.lag_seconds:.3f}",
            str(view.parked),
            str(view.skipped),
            view.state if view.state != "retrying" else f"retrying ({view.attempts} failed)",
            view.error or "-",
        )
    return figures, views
