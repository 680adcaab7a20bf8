"""``status``, ``rebuild`` and ``serve`` over a sharded data directory (holding ``cluster.json``).

The shard count comes from the directory itself (``serve --shards N`` creates one). Ray: a local
instance is started for the command
(or the cluster named by ``RAY_ADDRESS`` is joined); the ``cluster`` extra must be installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["is_sharded", "open_sharded", "sharded_rebuild", "sharded_status"]

_LAYOUT_FILE = "cluster.json"  # cluster.LAYOUT_FILE, without importing Ray for plain directories


def is_sharded(data: Path) -> bool:
    """Whether ``data`` is the data directory of a ``ShardedEngine``."""
    return (data / _LAYOUT_FILE).is_file()


def open_sharded(data: Path, shards: int | None = None) -> Any:
    """Open the ``ShardedEngine`` of ``data`` (created with ``shards`` shards if new).

    Args:
        data: A sharded data directory, or a new (missing or empty) one when ``shards`` is given.
        shards: The shard count to create with, or to check against the recorded one; None
            takes the recorded count.

    Raises:
        CliError: The cluster extra is missing, or ``data`` holds something else.
        ShardCountMismatch: ``shards`` differs from the recorded count.
    """
    from cli._commands import CliError  # noqa: PLC0415 - avoids an import cycle

    if data.exists() and not data.is_dir():
        raise CliError(f"--data {data} is not a directory")
    if not is_sharded(data) and data.is_dir() and any(data.iterdir()):
        raise CliError(
            f"--data {data} holds data but is not a sharded data directory (no {_LAYOUT_FILE}): "
            "--shards needs a new directory or one a sharded engine created"
        )
    try:
        from cluster import ShardedEngine  # noqa: PLC0415 - the cluster extra is optional
        from cluster._layout import recorded_shard_count  # noqa: PLC0415 - same reason
    except ImportError as error:
        raise CliError(
            f"a sharded data directory ({data}) needs the cluster extra: "
            f"pip install -e '.[cluster]' ({error.name} is missing)"
        ) from error
    count = shards if shards is not None else recorded_shard_count(data) or 1
    return ShardedEngine.open(data, shards=count, ray_address=os.environ.get("RAY_ADDRESS"))


def sharded_status(data: Path, *, as_json: bool) -> int:
    """Print every shard's status: JSON ``{"shards": {i: status}}`` or one table set per shard."""
    with open_sharded(data) as engine:
        current = engine.status()
    if as_json:
        body = {"shards": {str(shard): status for shard, status in current.items()}}
        sys.stdout.buffer.write(msgspec.json.encode(body) + b"\n")
        return 0
    from cli._render import status_tables, stdout_console  # noqa: PLC0415 - rich only here

    console = stdout_console()
    for shard, status in current.items():
        console.print(f"shard {shard}")
        for table in status_tables(status):
            console.print(table)
    return 0


def sharded_rebuild(data: Path, *, view: str | None) -> int:
    """Rebuild the views of every shard at once and print events/s over all of them."""
    with open_sharded(data) as engine:
        report = engine.rebuild(view)
    sys.stdout.write(
        f"rebuilt {', '.join(report.views)} on {engine.shards} shards: {report.events} events "
        f"in {report.seconds:.3f} s ({report.events_per_second:,.0f} events/s)\n"
    )
    return 0
