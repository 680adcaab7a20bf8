"""The wire between the engine and its projection process: messages and a two-way channel.

One ``multiprocessing`` pipe per projection process, both ways:

- engine -> projection: :class:`Head` (the log's new head, coalesced: at most one in flight
  per wake-up), and :class:`Call` (rebuild, retry a view or a parked event, status, stop);
- projection -> engine: :class:`Ready` (started, with its views' positions), :class:`Advanced`
  (views committed new checkpoints: read-your-writes waiters wake on it), :class:`Rebuilding`
  (a rebuild's progress, per batch), and :class:`Call`
  (park / unpark an event: parked events live in the log's environment, which only the engine
  writes);
- :class:`Reply` answers a :class:`Call` either way, by id.

A :class:`Channel` reads on one daemon thread and hands every message but replies to its
handler *on that thread*, so a handler must never wait for the other side (a call it makes must
run on another thread). Every call has a timeout; when the pipe breaks, pending calls fail with
:class:`~domain.errors.ProjectionUnavailable` at once.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from domain.errors import ProjectionUnavailable
from store import get_logger

__all__ = ["Advanced", "Call", "Channel", "Head", "Ready", "Rebuilding", "Reply"]

log = get_logger(__name__)


class Head(NamedTuple):
    """Engine -> projection: the log's head is now ``position``.

    ``wanted`` names the views queries are waiting for in the engine's router (as it sent the
    head): those are stepped first and reported one by one, as a local projector does.
    """

    position: int
    wanted: frozenset[str] = frozenset()


class Ready(NamedTuple):
    """Projection -> engine: started; its views' positions; its pid."""

    positions: dict[str, int]
    pid: int


class Advanced(NamedTuple):
    """Projection -> engine: views committed these checkpoints (view name -> position)."""

    positions: dict[str, int]


class Rebuilding(NamedTuple):
    """Projection -> engine: a rebuild has replayed ``done`` of the log's ``total`` events."""

    done: int
    total: int


class Call(NamedTuple):
    """Either way: run ``op`` with ``args`` and :class:`Reply` with ``call_id``."""

    call_id: int
    op: str
    args: tuple[Any, ...]


class Reply(NamedTuple):
    """Either way: the outcome of call ``call_id``: its value, or the exception it raised."""

    call_id: int
    ok: bool
    value: Any


class _Pending:
    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class Channel:
    """Both ends' view of the pipe: send, call with a timeout, and a reader thread.

    Args:
        conn: This side's end of the pipe.
        handler: Called on the reader thread with every message that is not a :class:`Reply`.
        on_close: Called once on the reader thread when the pipe breaks (the other side died or
            closed it).
        name: The reader thread's name.
    """

    def __init__(
        self,
        conn: Connection,
        handler: Callable[[Any], None],
        *,
        on_close: Callable[[], None] | None = None,
        name: str = "projection-channel",
    ) -> None:
        self._conn = conn
        self._handler = handler
        self._on_close = on_close
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._broken = ""
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)

    def start(self) -> None:
        """Start reading."""
        self._reader.start()

    @property
    def broken(self) -> str:
        """Why the pipe is broken, or ``""`` while it works."""
        return self._broken

    def send(self, message: Any) -> None:
        """Send ``message`` (thread-safe).

        Raises:
            ProjectionUnavailable: The pipe is broken.
        """
        if self._broken:
            raise ProjectionUnavailable(self._broken)
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, ValueError) as error:  # closed, or the other end is gone
            raise ProjectionUnavailable(f"the pipe broke: {error!r}") from error

    def call(self, op: str, *args: Any, timeout: float) -> Any:
        """Ask the other side to run ``op``; return its value or raise its error.

        Raises:
            ProjectionUnavailable: No answer within ``timeout`` seconds, or the pipe broke.
        """
        call_id = next(self._ids)
        pending = self._pending[call_id] = _Pending()
        try:
            self.send(Call(call_id, op, args))
            if not pending.done.wait(timeout):
                raise ProjectionUnavailable(f"no answer to {op!r} within {timeout} s")
        finally:
            self._pending.pop(call_id, None)
        if pending.ok:
            return pending.value
        error = pending.value
        if isinstance(error, BaseException):
            raise error
        raise ProjectionUnavailable(str(error))

    def reply(self, call: Call, fn: Callable[[], Any]) -> None:
        """Run ``fn`` and send its outcome as the reply to ``call`` (errors included)."""
        try:
            value = fn()
        except Exception as error:  # noqa: BLE001 - the caller on the other side gets it, typed
            outcome = Reply(call.call_id, ok=False, value=error)
        else:
            outcome = Reply(call.call_id, ok=True, value=value)
        try:
            self.send(outcome)
        except ProjectionUnavailable:
            log.debug("reply_not_sent", op=call.op)  # the asker is gone: nobody to tell

    def _read(self) -> None:
        reason = "the other side closed the pipe"
        try:
            while True:
                message = self._conn.recv()
                if isinstance(message, Reply):
                    pending = self._pending.get(message.call_id)
                    if pending is not None:  # else its caller gave up already
                        pending.ok, pending.value = message.ok, message.value
                        pending.done.set()
                    continue
                try:
                    self._handler(message)
                except Exception:  # one bad message must not cut the wire
                    log.exception("projection_message_failed", message=type(message).__name__)
        except (EOFError, OSError) as error:
            reason = f"the pipe closed ({type(error).__name__})"
        finally:
            self._broken = reason
            for pending in list(self._pending.values()):
                pending.value = ProjectionUnavailable(reason)
                pending.done.set()
            if self._on_close is not None:
                self._on_close()

    def close(self, timeout: float = 5.0) -> None:
        """Wait for the reader thread to end (the other side is gone), then close this end.

        The reader is joined first: closing a descriptor another thread is blocked reading does
        not wake it on Linux, and the number could be reused by a new pipe meanwhile.
        """
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(timeout)
        if not self._broken:
            self._broken = "closed"
        self._conn.close()
