"""``status`` and ``rebuild`` over a sharded data directory (one holding ``cluster.json``).

The shard count comes from the directory itself. Ray: a local instance is started for the command
(or the cluster named by ``RAY_ADDRESS`` is joined); the ``cluster`` extra must be installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["is_sharded", "sharded_rebuild", "sharded_status"]

_LAYOUT_FILE = "cluster.json"  # cluster.LAYOUT_FILE, without importing Ray for plain directories


def is_sharded(data: Path) -> bool:
    """Whether ``data`` is the data directory of a ``ShardedEngine``."""
    return (data / _LAYOUT_FILE).is_file()


def _open(data: Path) -> Any:
    from cli._commands import CliError  # noqa: PLC0415 - avoids an import cycle

    try:
        from cluster import ShardedEngine  # noqa: PLC0415 - the cluster extra is optional
        from cluster._layout import recorded_shard_count  # noqa: PLC0415 - same reason
    except ImportError as error:
        raise CliError(
            f"{data} is a sharded data directory: install the cluster extra "
            f"(pip install -e '.[cluster]'; {error.name} is missing)"
        ) from error
    shards = recorded_shard_count(data) or 1
    return ShardedEngine.open(data, shards=shards, ray_address=os.environ.get("RAY_ADDRESS"))


def sharded_status(data: Path, *, as_json: bool) -> int:
    """Print every shard's status: JSON ``{"shards": {i: status}}`` or one table set per shard."""
    with _open(data) as engine:
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
    with _open(data) as engine:
        report = engine.rebuild(view)
    sys.stdout.write(
        f"rebuilt {', '.join(report.views)} on {engine.shards} shards: {report.events} events "
        f"in {report.seconds:.3f} s ({report.events_per_second:,.0f} events/s)\n"
    )
    return 0
