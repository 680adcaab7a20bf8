"""Command line: ``python main.py COMMAND [--data DIR]`` (see ``python main.py --help``).

Commands: ``demo``, ``status``, ``events``, ``rebuild``, ``bench``, ``serve``, ``compact``,
``backup``. Stdout carries only
data (tables, JSON); logs and progress bars go to stderr. A known error (any ``EngineError``, an
unusable ``--data`` path) prints one line to stderr and exits 1; bad usage exits 2.

This is the only module that configures logging.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import ExcInfo

from actors import EngineError
from cli import (
    CliError,
    backup_command,
    bench,
    compact_command,
    events,
    open_engine,
    rebuild,
    serve,
    status,
)
from domain.ids import id_problem

DEFAULT_ORDERS = 200


def _last_line(out: TextIO, exc_info: ExcInfo) -> None:
    """Render a logged exception as its last line only (``-v`` shows the whole traceback)."""
    out.write("\n" + "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip())


def configure_logging(verbose: bool) -> None:
    """Send structlog (and stdlib) logs to stderr: WARNING and up, or INFO with ``--verbose``."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(),
                exception_formatter=structlog.dev.plain_traceback if verbose else _last_line,
            ),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _count(text: str) -> int:
    """Parse a non-negative integer argument (argparse turns ValueError into exit code 2)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:  # noqa: PLR2004 - the TCP port range
        raise argparse.ArgumentTypeError(f"must be a TCP port (0-65535), got {value}")
    return value


def _shard_count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _stream_id(text: str) -> str:
    # The engine's one id grammar: an id it could never have stored is bad usage (exit 2).
    problem = id_problem(text, "the id")
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def _demo(args: argparse.Namespace) -> int:
    # rich is imported here, not at startup: `status --json` and `events` run without it.
    from cli._demo import run_demo  # noqa: PLC0415
    from cli._render import stdout_console  # noqa: PLC0415

    with open_engine(args.data) as engine:
        run_demo(engine, args.orders, stdout_console())
    return 0


def _run(function: Callable[..., int], *names: str, **renamed: str) -> Callable[..., int]:
    """Adapt a command function to the parsed namespace (keyword arguments by name)."""

    def run(args: argparse.Namespace) -> int:
        keywords = {name: getattr(args, name) for name in names}
        keywords.update({key: getattr(args, attribute) for key, attribute in renamed.items()})
        return function(**keywords)

    return run


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (every subcommand has ``--help``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data", type=Path, default=Path("data"), metavar="DIR", help="data directory (./data)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log INFO to stderr")
    parser = argparse.ArgumentParser(
        prog="main.py", description="An embeddable, actor-based CQRS / event-sourcing engine."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, run: Callable[[argparse.Namespace], int]) -> Any:
        sub = commands.add_parser(name, parents=[common], help=summary, description=summary)
        sub.set_defaults(run=run)
        return sub

    demo = command("demo", "Run a realistic order workload and print what the views answer.", _demo)
    demo.add_argument(
        "--orders", type=_count, default=DEFAULT_ORDERS, metavar="N", help="orders to create (200)"
    )
    status_command = command(
        "status",
        "Print the engine status: head, views and their lag, parked events, file size.",
        _run(status, "data", as_json="json"),
    )
    status_command.add_argument("--json", action="store_true", help="print JSON, not tables")
    events_command = command(
        "events",
        "Print the log as JSON lines.",
        _run(events, "data", "stream", "limit", start="start"),
    )
    events_command.add_argument(
        "--stream", type=_stream_id, metavar="ID", help="only this stream (an order id)"
    )
    events_command.add_argument(
        "--from", dest="start", type=_count, default=1, metavar="N", help="from position N (1)"
    )
    events_command.add_argument("--limit", type=_count, metavar="N", help="at most N events")
    rebuild_command = command(
        "rebuild",
        "Replay the log into fresh views (progress on stderr) and print events/s.",
        _run(rebuild, "data", "view"),
    )
    rebuild_command.add_argument("--view", metavar="NAME", help="only this view (default: all)")
    bench_command = command(
        "bench",
        "Run the benchmark suite (bench/report.py); --data is not used (it works in temp dirs).",
        _run(bench, "quick", json_file="json", chart_file="chart"),
    )
    bench_command.add_argument("--quick", action="store_true", help="a small run, about 90 s")
    bench_command.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench_command.add_argument("--chart", metavar="FILE", help="also draw a chart (PNG)")
    command(
        "compact",
        "Compact the data directory in place (LMDB's compacting copy); no engine may run on it.",
        _run(compact_command, "data"),
    )
    backup_command_parser = command(
        "backup",
        "Copy the data directory (log, views, view snapshots) into DEST, even while it runs.",
        _run(backup_command, "data", "dest"),
    )
    backup_command_parser.add_argument(
        "dest", type=Path, metavar="DEST", help="a new (or empty) directory for the copy"
    )
    serve_command = command(
        "serve",
        "Serve the HTTP API (needs the http extra).",
        _run(serve, "data", "host", "port", "verbose", "shards", "projection"),
    )
    serve_command.add_argument("--host", default="127.0.0.1", help="interface (127.0.0.1)")
    serve_command.add_argument("--port", type=_port, default=8000, help="TCP port (8000)")
    serve_command.add_argument(
        "--shards",
        type=_shard_count,
        metavar="N",
        help="serve a sharded engine of N shards on Ray (created if new; a sharded --data is "
        "detected without it; RAY_ADDRESS joins a cluster)",
    )
    serve_command.add_argument(
        "--projection",
        choices=("in-process", "process"),
        default="in-process",
        help="where the views are kept: in this process (default) or in a projection "
        "process of their own (Engine.open(projection=...); one engine only)",
    )
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 known error, 2 bad usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        code: int = args.run(args)
    except (EngineError, CliError) as error:
        sys.stdout.flush()
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `events | head`): stop quietly, and keep Python's final
        # flush of stdout from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    raise SystemExit(main())
