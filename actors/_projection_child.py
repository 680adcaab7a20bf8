"""The projection process itself: what runs in the child of ``Engine.open(projection="process")``.

It follows the log read-only (:class:`~store.LogFollower`: no process lock, LMDB reader slots)
and is the only writer of the views environment while it runs (:meth:`ViewStore.attach`). Inside
it is the same read side as in the engine's process (:class:`~actors._readside.ReadSide`: one
projector for the views, checkpoints committed with the rows, poison events retried then parked,
rebuild by shadow and swap), fed differently:

- the engine tells it each new head (:class:`~actors._channel.Head`); its projector reads and
  decodes the records from the log itself (one shared :class:`~actors._tail.EventTail`);
- each batch's new checkpoints go back to the engine (:class:`~actors._channel.Advanced`), where
  read-your-writes queries wait for them;
- parked events are recorded in the log's environment, which only the engine writes: parking is a
  call to the engine, answered once it is committed, *before* the view's checkpoint passes the
  event (a failed call leaves the view to retry later: nothing is skipped unrecorded);
- its memory views (their rows live here, snapshotted to the views directory as in the engine)
  answer the engine's ``query`` calls; a call names a *floor*, the highest position the engine
  was ever told of that view, and is answered on the pipe's reader thread when the view is
  there, else on a small pool of threads once it gets there (a view restored from an older
  snapshot after a restart catches up first), so no answer is older than one given before.

It stops when asked, or when the pipe breaks (the engine died): either way it flushes the views
environment and exits. Killed, it loses nothing: the next one resumes from the checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

import pykka

from actors._channel import Advanced, Call, Channel, Head, Ready, Rebuilding
from actors._messages import HeadAdvanced
from actors._projector import ViewAdvanced
from actors._readside import SNAPSHOT_EVERY, ReadSide
from actors._router import run_query
from actors._tail import EventTail
from domain.errors import ProjectionUnavailable
from store import Codec, LogFollower, ParkedEvent, RecordedEvent, ViewStore, get_logger
from views import Backend, ReadModel

__all__ = ["ChildSpec", "main"]

log = get_logger(__name__)

HOUSEKEEPING_PERIOD = 0.5  # seconds between two flush checks of the views environment
CALL_TIMEOUT = 30.0  # seconds a park / unpark may wait for the engine
SWITCH_INTERVAL = 0.0005  # seconds: see main()
QUERY_THREADS = 4  # threads answering the engine's queries of the memory views


class ChildSpec(NamedTuple):
    """What a projection process needs to start (pickled to it).

    Attributes:
        path: The data directory.
        views_dir: The views environment's directory.
        codec: The engine's codec (event types and upcasters).
        models: The read models it keeps.
        skip_unknown: Let views skip (and count) events they cannot decode.
        backends: Where each model lives (``"lmdb"`` when not named): memory views are kept
            here and queried through the pipe.
        snapshot_every: Events a memory view applies between two background snapshots.
    """

    path: str
    views_dir: str
    codec: Codec
    models: list[ReadModel]
    skip_unknown: bool
    backends: Mapping[str, Backend] = {}
    snapshot_every: int = SNAPSHOT_EVERY


class _FollowedLog:
    """The log as the projectors need it: read from the follower, parked through the engine."""

    def __init__(self, follower: LogFollower, channel: Channel) -> None:
        self._follower = follower
        self._channel = channel

    def head(self) -> int:
        return self._follower.head()

    def read_all(
        self, from_position: int = 1, batch_size: int = 1000, *, tags: frozenset[str] | None = None
    ) -> Iterator[list[RecordedEvent]]:
        return self._follower.read_all(from_position, batch_size, tags=tags)

    def park(self, parked: ParkedEvent) -> None:
        self._channel.call("park", parked, timeout=CALL_TIMEOUT)

    def parked(self, view: str | None = None) -> list[ParkedEvent]:
        return self._follower.parked(view)

    def unpark(self, view: str, position: int) -> bool:
        return bool(self._channel.call("unpark", view, position, timeout=CALL_TIMEOUT))


class _Uplink:
    """Tells the engine the checkpoints each projector batch committed; wakes floor waiters."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self.advanced = threading.Condition()

    def tell(self, message: Any) -> None:
        if isinstance(message, ViewAdvanced):
            with self.advanced:
                self.advanced.notify_all()
            with contextlib.suppress(ProjectionUnavailable):  # the engine is gone: we stop too
                self._channel.send(Advanced(dict(message.positions)))


class _Child:
    def __init__(self, conn: Connection, spec: ChildSpec) -> None:
        self.spec = spec
        self.stop = threading.Event()
        self.stop_call: Call | None = None
        self.subscribers: list[pykka.ActorRef[Any]] = []
        self.read: ReadSide | None = None
        self.wanted: frozenset[str] = frozenset()  # views queries wait for in the engine
        self.channel = Channel(conn, self.handle, on_close=self.stop.set, name="projection-wire")
        self.uplink = _Uplink(self.channel)
        # Queries are short and frequent: a pool, not a thread per call as for the rare calls.
        self.queries = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="projection-query")

    def handle(self, message: Any) -> None:
        """Reader thread: wake the projectors on a head, run calls on threads of their own."""
        if isinstance(message, Head):
            self.wanted = message.wanted
            for ref in self.subscribers:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(HeadAdvanced(message.position))
        elif isinstance(message, Call) and message.op == "stop":
            self.stop_call = message
            self.stop.set()
        elif isinstance(message, Call) and message.op == "query":
            if self.caught_up(message.args[0], message.args[2]):
                # Answered right here: a hand-off to the pool (two thread wake-ups) cost more
                # than most queries do (a search plan is bounded by its page or its hits).
                self.channel.reply(message, lambda: self.query(*message.args))
            else:  # it must wait for the view: never on this thread
                self.queries.submit(self.channel.reply, message, lambda: self.query(*message.args))
        elif isinstance(message, Call):
            # Never on this thread: a rebuild may park events, a call answered on this thread.
            threading.Thread(
                target=self.channel.reply,
                args=(message, lambda: self.run(message)),
                name=f"projection-{message.op}",
                daemon=True,
            ).start()

    def run(self, call: Call) -> Any:
        read = self.read
        if read is None:
            raise ProjectionUnavailable("still starting")
        if call.op == "rebuild":
            # Every view asked for in one scan of the log (one scan per view before).
            return read.rebuild_views(list(call.args[0]), self._progress)
        if call.op == "retry_parked":
            return read.retry_parked(call.args[0], call.args[1])
        if call.op == "retry_view":
            return read.retry_view(call.args[0])
        if call.op == "status":
            return read.status(call.args[0])
        raise ValueError(f"unknown call {call.op!r}")

    def caught_up(self, name: str, floor: int) -> bool:
        """Whether view ``name`` has applied ``floor`` (False while starting or unknown)."""
        read = self.read
        view = None if read is None else read.views.get(name)
        return view is not None and view.position() >= floor

    def query(self, name: str, query: Any, floor: int, timeout: float) -> Any:
        """Answer ``query`` from memory view ``name`` once it has applied ``floor``.

        Raises:
            ProjectionUnavailable: The view did not get to ``floor`` within ``timeout``.
        """
        read = self.read
        if read is None:
            raise ProjectionUnavailable("still starting")
        view = read.views[name]
        deadline = time.monotonic() + timeout
        with self.uplink.advanced:
            while view.position() < floor:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProjectionUnavailable(
                        f"view {name!r} is at {view.position()}, catching up to {floor} (it "
                        "was restored from an older snapshot): ask again shortly"
                    )
                self.uplink.advanced.wait(left)
        return run_query(view, query)

    def _progress(self, done: int, total: int) -> None:
        # One message per replayed batch (2,000 events): the engine's caller sees the bar move.
        with contextlib.suppress(ProjectionUnavailable):
            self.channel.send(Rebuilding(done, total))

    def serve(self) -> None:
        spec = self.spec
        self.channel.start()
        follower = LogFollower(spec.path, codec=spec.codec)
        view_store = ViewStore.attach(spec.views_dir)
        try:
            source = _FollowedLog(follower, self.channel)
            self.read = ReadSide.start(
                source,
                self.subscribers.append,
                views=spec.models,
                view_backends={m.name: spec.backends.get(m.name, "lmdb") for m in spec.models},
                skip_unknown=spec.skip_unknown,
                view_store=view_store,
                tail=EventTail(source),
                snapshot_every=spec.snapshot_every,
                advanced_to=self.uplink,
                waiting=lambda: len(self.wanted),
                wanted=lambda name: name in self.wanted,
            )
            try:
                positions = {name: view.position() for name, view in self.read.views.items()}
                self.channel.send(Ready(positions, os.getpid()))
                log.info("projection_process_ready", views=sorted(positions), pid=os.getpid())
                while not self.stop.wait(HOUSEKEEPING_PERIOD):
                    view_store.sync_if_due()
            finally:
                self.queries.shutdown(wait=True, cancel_futures=True)
                self.read.close()
        finally:
            view_store.close()
            follower.close()
        if self.stop_call is not None:
            self.channel.reply(self.stop_call, lambda: None)
        log.info("projection_process_stopped", pid=os.getpid())


def main(conn: Connection, spec: ChildSpec) -> None:
    """Run a projection process until it is asked to stop or its engine goes away."""
    # This process is ours alone (the embedding program's own switch interval is its choice):
    # hand the GIL over sooner, so that the pipe's reader and the query threads do not wait
    # out a projector batch's default 5 ms slice.
    sys.setswitchinterval(SWITCH_INTERVAL)
    Path(spec.views_dir).mkdir(parents=True, exist_ok=True)
    _Child(conn, spec).serve()
