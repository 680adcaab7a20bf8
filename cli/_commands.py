"""The subcommands other than ``demo``: status, events, rebuild, bench, serve.

Each returns the process exit code. Engine errors propagate to ``main.py``, which prints them as
one line; so does :class:`CliError` for a ``--data`` path that cannot be used.
"""

from __future__ import annotations

import importlib
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, Final

import lmdb
import msgspec

from actors import CorruptLog, Engine, EngineError
from cli._cluster import is_sharded, open_sharded, sharded_rebuild, sharded_status
from domain.orders import ORDERS
from store import EventStore, RecordedEvent

__all__ = [
    "BENCH_DIR",
    "CliError",
    "bench",
    "events",
    "open_engine",
    "rebuild",
    "serve",
    "status",
]

BENCH_DIR: Final = Path(__file__).resolve().parent.parent / "bench"
"""Where the benchmark suite lives (``bench/report.py``)."""

_CATCH_UP_SECONDS: Final = 10.0
_POLL_SECONDS: Final = 0.1
_BACKLOG: Final = 2048  # uvicorn's default
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class CliError(Exception):
    """A problem the CLI reports as one line: an unusable ``--data`` path, a busy port..."""


def open_engine(data: Path, **options: Any) -> Engine:
    """Open the engine on ``data``, turning OS and LMDB failures into :class:`CliError`.

    Raises:
        CliError: ``data`` is not a directory, cannot be created, or cannot be opened.
        LogLocked: Another live engine holds ``data``.
    """
    if data.exists() and not data.is_dir():
        raise CliError(f"--data {data} is not a directory")
    if is_sharded(data):
        raise CliError(
            f"--data {data} is a sharded data directory: status, rebuild and serve work on it "
            "(events reads one log: run it on a shard's directory, shard-<i>, while no engine "
            "holds it)"
        )
    try:
        return Engine.open(data, **options)
    except EngineError:
        raise
    except OSError as error:
        raise CliError(f"cannot use --data {data}: {error.strerror or error}") from error
    except lmdb.Error as error:
        raise CliError(f"cannot open the store in --data {data}: {error}") from error


def _catch_up(engine: Engine) -> None:
    """Wait until every view is caught up or stalled (on a corrupt record), at most 10 s.

    A view that is retrying (its storage failed) may still recover: it is waited for.
    """
    deadline = time.monotonic() + _CATCH_UP_SECONDS
    while not engine.wait_for_views(timeout=_POLL_SECONDS):
        views = engine.status().views.values()
        done = all(v.state == "stalled" or not v.lag_events for v in views)
        if time.monotonic() >= deadline or done:
            return


def status(data: Path, *, as_json: bool) -> int:
    """Print the engine status (after letting the views catch up), as JSON or as tables."""
    if is_sharded(data):
        return sharded_status(data, as_json=as_json)
    with open_engine(data) as engine:
        # A freshly opened engine replays its in-memory views: report them once caught up (a
        # stalled view shows its error and lag instead).
        _catch_up(engine)
        current = engine.status()
    if as_json:
        sys.stdout.buffer.write(msgspec.json.encode(current) + b"\n")
        return 0
    from cli._render import status_tables, stdout_console  # noqa: PLC0415 - rich only here

    console = stdout_console()
    for table in status_tables(current):
        console.print(table)
    return 0


def _log(store: EventStore, start: int, size: int) -> Iterator[list[RecordedEvent]]:
    """Yield the log in batches from ``start``; on a corrupt record, its good prefix first."""
    position = max(start, 1)
    while True:
        try:
            batch = next(store.read_all(position, size), [])
        except CorruptLog as corrupt:
            if corrupt.position > position:  # print what precedes the bad record, then fail
                yield next(store.read_all(position, corrupt.position - position), [])
            raise
        if batch:
            yield batch
        if len(batch) < size:
            return
        position = batch[-1].position + 1


def _records(
    engine: Engine, stream: str | None, start: int, limit: int | None
) -> Iterable[list[RecordedEvent]]:
    if stream is not None:
        events = engine.store.read_stream(stream, stream_type=ORDERS.stream_type)
        return [[event for event in events if event.position >= start]]
    return _log(engine.store, start, min(limit or 1000, 1000))


def _line(event: RecordedEvent) -> dict[str, Any]:
    # The stored record is array-like on disk; a line names every field for readers and jq.
    return {
        "position": event.position,
        "stream_id": event.stream_id,
        "stream_type": event.stream_type,
        "version": event.version,
        "tag": event.tag,
        "schema_version": event.schema_version,
        "timestamp": event.timestamp,
        "command_id": event.command_id,
        "event": event.event,
    }


def events(data: Path, *, stream: str | None, start: int, limit: int | None) -> int:
    """Print the log (or one stream) from position ``start`` as JSON lines, up to ``limit``.

    Each line holds position, stream_id, stream_type, version, tag, schema_version, timestamp
    (ns since the epoch, UTC), command_id and the event's fields (money as decimal strings).

    Raises:
        CorruptLog: A record cannot be decoded; the lines before its batch are printed first.
    """
    out: BinaryIO = sys.stdout.buffer
    encoder = msgspec.json.Encoder()
    left = limit
    # Views are not needed to read the log: opening without them starts no replay.
    with open_engine(data, views=[]) as engine:
        for batch in _records(engine, stream, start, limit):
            chunk = batch if left is None else batch[:left]
            if chunk:
                out.write(b"\n".join(encoder.encode(_line(event)) for event in chunk) + b"\n")
            if left is not None:
                left -= len(chunk)
                if left <= 0:
                    break
        out.flush()
    return 0


def rebuild(data: Path, *, view: str | None) -> int:
    """Replay the log into fresh views (all, or ``view``) with a progress bar on stderr."""
    if is_sharded(data):
        return sharded_rebuild(data, view=view)
    from cli._render import progress_bar  # noqa: PLC0415 - rich only here

    with open_engine(data) as engine, progress_bar() as progress:
        task = progress.add_task(f"rebuilding {view or 'all views'}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = engine.rebuild(view, progress=advance)
    names = ", ".join(report.views)
    sys.stdout.write(
        f"rebuilt {names}: {report.events} events in {report.seconds:.3f} s "
        f"({report.events_per_second:,.0f} events/s)\n"
    )
    return 0


def bench(*, quick: bool, json_file: str | None, chart_file: str | None) -> int:
    """Run the benchmark suite, ``bench/report.py``, passing the options through."""
    if not (BENCH_DIR / "report.py").is_file():
        sys.stderr.write(f"error: the benchmark suite {BENCH_DIR / 'report.py'} is missing\n")
        return 1
    argv = ["--quick"] if quick else []
    if json_file is not None:
        argv += ["--json", json_file]
    if chart_file is not None:
        argv += ["--chart", chart_file]
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    report = importlib.import_module("report")
    return int(report.main(argv))


def _listen(host: str, port: int) -> socket.socket:
    """Bind a TCP listener (with proto TCP, so asyncio sets TCP_NODELAY on every connection)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(_BACKLOG)
    except OSError as error:
        listener.close()
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return listener


def _served(data: Path, shards: int | None, projection: str) -> Any:
    """Open the engine ``serve`` serves: sharded if asked or if ``data`` is sharded."""
    if shards is not None or is_sharded(data):
        if projection != "in-process":
            raise CliError("--projection applies to one engine, not to a sharded --data")
        return open_sharded(data, shards)
    return open_engine(data, projection=projection)


def serve(
    data: Path,
    *,
    host: str,
    port: int,
    verbose: bool,
    shards: int | None = None,
    projection: str = "in-process",
) -> int:
    """Serve the HTTP API on ``host:port`` until interrupted (Ctrl+C or SIGTERM).

    Args:
        data: The data directory: one engine's, or a sharded engine's (detected).
        host: The interface to listen on.
        port: The TCP port (0: any free one).
        verbose: Log at INFO level.
        shards: Serve a sharded engine of this many shards (created if new; must match the
            recorded count otherwise); None serves what ``data`` holds.
        projection: ``"in-process"`` or ``"process"``, as ``Engine.open(projection=...)``.
    """
    try:
        import uvicorn  # noqa: PLC0415 - the http extra is optional

        from api import create_app, uvicorn_config  # noqa: PLC0415 - same reason
    except ImportError as error:
        sys.stderr.write(
            f"error: serve needs the http extra ({error.name} is missing): "
            "pip install -e '.[http]'\n"
        )
        return 1
    # Open the engine and bind the port first: a locked data directory or a busy port is one
    # clear line here, not a traceback from the server's startup.
    with _served(data, shards, projection) as engine, _listen(host, port) as listener:
        bound_host, bound_port = listener.getsockname()[:2]
        what = f"{data} ({engine.shards} shards)" if is_sharded(data) else str(data)
        config = uvicorn_config(
            create_app(engine),
            log_level="info" if verbose else "warning",
            log_config=_uvicorn_logging(),
        )
        sys.stderr.write(
            f"serving {what} on http://{bound_host}:{bound_port} (API docs at /docs); "
            "Ctrl+C stops\n"
        )
        sys.stderr.flush()
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the
        # previous handler: ours turns it into a clean exit 0, with the engine closed by `with`.
        previous = {number: signal.signal(number, _stopped) for number in _STOP_SIGNALS}
        try:
            uvicorn.Server(config).run(sockets=[listener])
        except _Stopped:
            pass
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
    sys.stderr.write("stopped\n")
    return 0


class _Stopped(Exception):
    """Raised by the stop-signal handler once the server has shut down."""


def _stopped(_number: int, _frame: FrameType | None) -> None:
    raise _Stopped


def _uvicorn_logging() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415 - the http extra is optional

    config: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(LOGGING_CONFIG))
    # uvicorn writes its access log to stdout; stdout carries only data here.
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config
