"""The command line behind ``main.py``: the demo workload, the subcommands, their rich tables.

rich (the ``cli`` dependency group) is imported only by the commands that draw tables or progress
bars; fastapi and uvicorn (the ``http`` extra) only by ``serve``.
"""

from cli._commands import BENCH_DIR, CliError, bench, events, open_engine, rebuild, serve, status
from cli._storage import backup_command, compact_command

__all__ = [
    "BENCH_DIR",
    "CliError",
    "backup_command",
    "bench",
    "compact_command",
    "events",
    "open_engine",
    "rebuild",
    "serve",
    "status",
]
