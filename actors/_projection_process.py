"""The engine's side of a projection process: start it, feed it heads, supervise it, stop it.

With ``Engine.open(path, projection="process")`` the engine's LMDB views are projected by a child
process (:mod:`actors._projection_child`, started with ``multiprocessing``'s *spawn*: a fresh
interpreter, so its GIL is its own), while the engine's process keeps answering their queries
from the views environment (:class:`~views.FollowedView`). :class:`ProjectionProcess`:

- **feeds** it: it is subscribed to the log writer like a projector; each commit's head is
  stored and a sender thread forwards the latest one (heads coalesce: a slow child is never sent
  a backlog, and the writer never blocks on the pipe);
- **wakes read-your-writes**: the child's :class:`~actors._channel.Advanced` become
  :class:`~actors._projector.ViewAdvanced` for the query router, exactly as a local projector's;
- **parks** the child's poison events in the log's environment (only this process writes it);
- **supervises** it: a monitor thread notices its death (exit, crash, ``kill -9``), logs
  ``projection_process_died``, and starts a new one after a capped exponential backoff (0.1 s
  doubling to 5 s, reset once one runs); the new one resumes from the views' checkpoints, so no
  event is skipped or applied twice. ``status()`` shows it (:class:`ProjectionStatus`);
- **forwards** rebuild, ``retry_view`` and ``retry_parked`` of its views, and the queries of its
  memory views (:class:`~actors._remote_view.RemoteView`), with timeouts: while it is down they
  raise :class:`~domain.errors.ProjectionUnavailable`. A query carries the highest position ever
  reported for its view (its *floor*): a child restored from an older snapshot after a restart
  answers only once it is back there, so no answer goes back in time;
- **stops** it at close: asked first, killed if it does not exit in time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any, Literal

import msgspec
import pykka

from actors._backoff import Backoff
from actors._channel import Advanced, Call, Channel, Head, Ready, Rebuilding
from actors._messages import HeadAdvanced, Teller
from actors._progress import ViewStatus
from actors._projection_child import ChildSpec
from actors._projector import ViewAdvanced
from actors._rebuild import RebuildReport
from domain.errors import ProjectionUnavailable
from store import EventStore, get_logger
from views import View

__all__ = ["RESTART_BACKOFF", "ProjectionProcess", "ProjectionStatus"]

log = get_logger(__name__)

RESTART_BACKOFF = Backoff(first=0.1, factor=2.0, cap=5.0)
"""How long the engine waits before starting a projection process again after it died."""

START_TIMEOUT = 60.0  # seconds a new projection process may take to report Ready
STATUS_TIMEOUT = 2.0  # seconds status() waits for the process's view health
QUERY_TIMEOUT = 10.0  # seconds a query of a memory view there may take (catching up included)

ProcessState = Literal["starting", "running", "restarting", "stopped"]


class ProjectionStatus(msgspec.Struct, frozen=True):
    """The projection process, as ``Engine.status().projection`` shows it (process mode only).

    Attributes:
        state: ``"starting"``, ``"running"``, ``"restarting"`` (it died; a new one is due after
            the backoff) or ``"stopped"`` (the engine closed).
        pid: Its OS process id (0 while none runs).
        restarts: How many times it died and was started again.
        views: The views it keeps.
        last_exit_code: The exit code of the last one that died (``-9``: killed), or None.
        error: Why the last start failed, or ``""``.
    """

    state: ProcessState
    pid: int
    restarts: int
    views: tuple[str, ...]
    last_exit_code: int | None = None
    error: str = ""


class ProjectionProcess:
    """Runs and supervises the projection process of an engine (see the module's notes).

    Args:
        spec: What the child needs (data directory, codec, read models).
        store: The engine's event store (parked events are written there).
        names: The views it keeps.
        backoff: Restart delays.

    Attributes:
        router: The query router: told :class:`ViewAdvanced` when the child's views advance
            while ``waiting()`` (set before :meth:`start`, as the next two).
        waiting: Whether queries are parked in the router (default: assume so). Reports that
            nobody waits for do not wake it: it reads the positions again after parking a
            query, so a report and a parking that race are never both missed.
        wanted: The views queries wait for, sent to the child with each head.
        served: The engine's read-only views of the child's views, by name (set before
            :meth:`start`; the status of a view falls back on them while the child is down).
    """

    def __init__(
        self,
        spec: ChildSpec,
        *,
        store: EventStore,
        names: frozenset[str],
        backoff: Backoff = RESTART_BACKOFF,
    ) -> None:
        self.names = names
        self.router: Teller | None = None
        self.served: dict[str, View] = {}
        self.waiting: Callable[[], bool] = lambda: True
        self.wanted: Callable[[], frozenset[str]] = frozenset
        self._spec = spec
        self._store = store
        # The child's views' positions as it last reported them, and the highest ever reported
        # (the floor a query of a memory view there must not go below, across restarts).
        self._positions: dict[str, int] = dict.fromkeys(names, 0)
        self._floors: dict[str, int] = dict.fromkeys(names, 0)
        # The progress callback of the rebuild in flight (one at a time: the read side's lock).
        self._rebuild_progress: Callable[[int, int], None] | None = None
        self._rebuild_lock = threading.Lock()
        self._backoff = backoff
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._state: ProcessState = "starting"
        self._restarts = 0
        self._last_exit: int | None = None
        self._error = ""
        self._head = 0
        self._sent = -1
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait until it reports ready.

        Raises:
            ProjectionUnavailable: It did not start within ``timeout`` seconds (its read models
                may not be importable there: a class defined in ``__main__`` is not).
        """
        self._spawn(timeout)
        for target, name in (
            (self._monitor, "projection-monitor"),
            (self._feed, "projection-feed"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spawn(self, timeout: float) -> None:
        ready = threading.Event()
        got: list[Ready] = []
        parent_end, child_end = socket.socketpair()
        channel_box: list[Channel] = []

        def handle(message: Any) -> None:
            if isinstance(message, Ready):
                got.append(message)
                ready.set()
            self._handle(channel_box[0], message)

        channel = Channel(
            Connection(parent_end.detach()), handle, on_close=ready.set, name="projection-channel"
        )
        channel_box.append(channel)
        self._state = "starting"
        # A module entry point in a fresh interpreter (not multiprocessing's spawn, which runs
        # the parent's __main__ again and keeps a copy of the pipe until the child takes it).
        paths = [entry for entry in sys.path if entry]
        process = subprocess.Popen(  # noqa: S603 - our own module, our own interpreter
            [sys.executable, "-m", "actors._projection_main", str(child_end.fileno())],
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)),
        )
        child_end.close()  # ours closed: the child's death is an EOF on our end
        channel.start()
        with contextlib.suppress(ProjectionUnavailable):  # it died already: reported below
            channel.send(self._spec)
        if not ready.wait(timeout) or not got:
            process.kill()
            process.wait(10)
            channel.close(timeout=10)
            reason = (
                f"it did not report ready within {timeout} s (exit code {process.returncode}; "
                "its error is on stderr)"
            )
            self._error = reason
            raise ProjectionUnavailable(reason)
        self._process, self._channel = process, channel
        self._sent = -1  # the new one is told the head again
        self._error = ""
        self._state = "running"
        self._wake.set()
        self._advanced(got[0].positions, restarted=True)
        log.info("projection_process_started", pid=process.pid, views=sorted(self.names))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the process (asked, then killed after ``timeout``) and the threads. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        process, channel = self._process, self._channel
        if process is not None and channel is not None:
            if process.poll() is None:
                with contextlib.suppress(ProjectionUnavailable):
                    channel.call("stop", timeout=timeout)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("projection_process_killed", pid=process.pid)
                process.kill()
                process.wait(10)
            channel.close(timeout=10)
        self._state = "stopped"
        log.info("projection_process_stopped", restarts=self._restarts)

    # ------------------------------------------------------------ threads

    def _monitor(self) -> None:
        """Notice the process's death and start a new one, with backoff, until stopped."""
        while not self._stop.is_set():
            process = self._process
            if process is None:
                return
            try:
                process.wait(0.25)  # a supervision poll: wakes for the stop flag too
            except subprocess.TimeoutExpired:
                continue
            if self._stop.is_set():
                return
            self._restarts += 1
            self._last_exit = process.returncode
            self._state = "restarting"
            log.warning(
                "projection_process_died",
                pid=process.pid,
                exit_code=process.returncode,
                restarts=self._restarts,
            )
            if self._channel is not None:
                self._channel.close(timeout=10)
            attempts = 0
            while not self._stop.is_set():
                attempts += 1
                if self._stop.wait(self._backoff.delay(attempts)):
                    return
                try:
                    self._spawn(START_TIMEOUT)
                except ProjectionUnavailable as error:
                    log.warning(
                        "projection_process_start_failed", attempts=attempts, error=str(error)
                    )
                else:
                    break

    def _feed(self) -> None:
        """Forward the latest head to the process (coalesced), until stopped."""
        while not self._stop.is_set():
            self._wake.wait(0.5)  # woken by each commit; the timeout re-checks the stop flag
            self._wake.clear()
            head, channel = self._head, self._channel
            if head == self._sent or channel is None or self._state != "running":
                continue
            try:
                channel.send(Head(head, self.wanted()))
            except ProjectionUnavailable:
                continue  # it died: the monitor starts a new one, which reads the head itself
            self._sent = head

    def tell(self, message: Any) -> None:
        """Writer thread, after each commit: note the new head and wake the sender."""
        if isinstance(message, HeadAdvanced) and message.head > self._head:
            self._head = message.head
            self._wake.set()

    def _handle(self, channel: Channel, message: Any) -> None:
        """Channel thread: wake waiting queries; park and unpark for the process."""
        if isinstance(message, Advanced):
            self._advanced(message.positions)
        elif isinstance(message, Rebuilding):
            progress = self._rebuild_progress
            if progress is not None:
                progress(message.done, message.total)
        elif isinstance(message, Call) and message.op == "park":
            channel.reply(message, lambda: self._store.park(message.args[0]))
        elif isinstance(message, Call) and message.op == "unpark":
            channel.reply(message, lambda: self._store.unpark(*message.args))

    def _advanced(self, positions: Mapping[str, int], *, restarted: bool = False) -> None:
        """Note the child's positions (a new child's may be lower) and wake waiting queries."""
        if restarted:
            self._positions = dict.fromkeys(self.names, 0)
        for name, position in positions.items():
            self._positions[name] = position
            self._floors[name] = max(self._floors.get(name, 0), position)
        if self.router is not None and (restarted or self.waiting()):
            with contextlib.suppress(pykka.ActorDeadError):
                self.router.tell(ViewAdvanced(dict(positions)))

    def position(self, view: str) -> int:
        """Return the position the child last reported for ``view``."""
        return self._positions.get(view, 0)

    def query(self, view: str, query: Any) -> Any:
        """Answer ``query`` from memory view ``view`` there, never older than any answer before.

        Raises:
            ProjectionUnavailable: The child is down, or did not answer in time.
        """
        floor = self._floors.get(view, 0)
        return self._call("query", view, query, floor, QUERY_TIMEOUT, timeout=QUERY_TIMEOUT + 5.0)

    # ------------------------------------------------------------ calls

    def _call(self, op: str, *args: Any, timeout: float) -> Any:
        channel = self._channel
        if self._state != "running" or channel is None:
            raise ProjectionUnavailable(f"it is {self._state}")
        return channel.call(op, *args, timeout=timeout)

    def rebuild(
        self, names: list[str], progress: Callable[[int, int], None] | None = None
    ) -> RebuildReport:
        """Rebuild ``names`` (views of the process) there; return its report.

        ``progress(done, total)`` is called as the process reports its batches (on the
        channel's thread: keep it short).
        """
        with self._rebuild_lock:  # one rebuild at a time: one progress callback
            self._rebuild_progress = progress
            try:
                report: RebuildReport = self._call("rebuild", names, timeout=3600.0)
            finally:
                self._rebuild_progress = None
        return report

    def retry_parked(self, view: str, position: int) -> bool:
        """Apply a parked event of one of its views again, there."""
        return bool(self._call("retry_parked", view, position, timeout=30.0))

    def retry_view(self, view: str) -> None:
        """Restart one of its views there (see ``Engine.retry_view``)."""
        self._call("retry_view", view, timeout=30.0)

    def view_status(self, head: int) -> dict[str, ViewStatus]:
        """Return its views' progress and health (from the views' checkpoints if it is down)."""
        try:
            found: dict[str, ViewStatus] = self._call("status", head, timeout=STATUS_TIMEOUT)
        except ProjectionUnavailable as error:
            now = time.time()
            found = {}
            for name, view in self.served.items():
                position = view.position()
                found[name] = ViewStatus(
                    position=position,
                    lag_events=max(0, head - position),
                    lag_seconds=0.0,
                    backend=view.backend,
                    state="retrying",
                    error=f"ProjectionUnavailable: {error.reason}",
                    attempts=max(1, self._restarts),
                    failing_since=now,
                )
        return found

    def status(self) -> ProjectionStatus:
        """Return the process's state."""
        process = self._process
        running = self._state == "running" and process is not None
        return ProjectionStatus(
            state=self._state,
            pid=process.pid if running and process is not None else 0,
            restarts=self._restarts,
            views=tuple(sorted(self.names)),
            last_exit_code=self._last_exit,
            error=self._error,
        )
