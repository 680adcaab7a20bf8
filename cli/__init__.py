"""The command line behind ``main.py``: the demo workload, the subcommands, their rich tables.

rich (the ``cli`` dependency group) is imported only by the commands that draw tables or progress
bars; fastapi and uvicorn (the ``http`` extra) only by ``serve``.
"""

from cli._commands import BENCH_DIR, CliError, bench, events, open_engine, rebuild, serve, status

__all__ = ["BENCH_DIR", "CliError", "bench", "events", "open_engine", "rebuild", "serve", "status"]
