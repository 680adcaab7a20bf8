"""The storage maintenance subcommands: ``compact`` and ``backup``.

Each prints one summary line on stdout and returns the exit code. Engine errors (a directory a
live engine holds: :class:`~domain.errors.LogLocked`; a backup destination in the way:
:class:`~domain.errors.MaintenanceFailed`) propagate to ``main.py``, which prints them as one
line and exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from store import backup, compact

__all__ = ["backup_command", "compact_command"]


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def compact_command(data: Path) -> int:
    """Compact the stopped data directory ``data`` in place and print the sizes."""
    report = compact(data)
    saved = report.before - report.after
    sys.stdout.write(
        f"compacted {data}: {_mib(report.before)} -> {_mib(report.after)} "
        f"({saved} bytes freed) in {report.seconds:.2f} s\n"
    )
    return 0


def backup_command(data: Path, dest: Path) -> int:
    """Copy ``data`` (an engine may be running on it) into the new directory ``dest``."""
    report = backup(data, dest)
    sys.stdout.write(
        f"backed up {data} to {report.dest}: {_mib(report.bytes)}, "
        f"{report.snapshots} view snapshots, in {report.seconds:.2f} s\n"
    )
    return 0
