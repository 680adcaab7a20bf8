"""The read side: views, their projectors, the query router and rebuild, behind one object."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import msgspec
import pykka
import structlog

from actors._future import DispatcherFuture, bridge
from actors._projector import Progress, Projector, RetryParked, Swap, ViewStatus, replay_into
from actors._router import Ask, Cancel, QueryRouter, view_for
from actors._tail import EventTail
from actors._writer import LogWriter
from domain.errors import ConsistencyTimeout, EngineError, UnknownView
from store import EventStore, ViewStore
from views import View
from views.orders import QUERY_VIEW, order_views, validate_query

__all__ = ["ReadSide", "RebuildReport", "ViewStatus"]

log = structlog.get_logger(__name__)


class RebuildReport(msgspec.Struct, frozen=True):
    """What a rebuild did.

    Attributes:
        events: Events replayed (summed over the rebuilt views).
        seconds: Wall-clock time of the rebuild.
        views: Names of the rebuilt views.
    """

    events: int
    seconds: float
    views: tuple[str, ...] = ()

    @property
    def events_per_second(self) -> float:
        """Replay rate."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class ReadSide:
    """Owns the views, one projector actor per view, and the query router actor."""

    def __init__(
        self,
        store: EventStore,
        views: Sequence[View],
        router: pykka.ActorRef[QueryRouter],
        routes: Mapping[type, str],
        projectors: dict[str, tuple[pykka.ActorRef[Projector], Progress]],
        *,
        tail: EventTail | None = None,
    ) -> None:
        self._store = store
        self.tail = tail
        self.views = {view.name: view for view in views}
        self._router = router
        self._routes = dict(routes)
        self._projectors = {name: ref for name, (ref, _) in projectors.items()}
        self._progress = {name: progress for name, (_, progress) in projectors.items()}
        self._rebuild_lock = threading.Lock()
        self._tickets = itertools.count(1)

    @classmethod
    def start(
        cls,
        store: EventStore,
        writer: pykka.ActorRef[LogWriter],
        *,
        views: Sequence[View] | None,
        view_backends: Mapping[str, Literal["memory", "lmdb"]] | None,
        skip_unknown: bool,
        view_store: ViewStore | None = None,
        tail: EventTail | None = None,
        routes: Mapping[type, str] | None = None,
        validate: Callable[[Any], None] = validate_query,
    ) -> ReadSide:
        """Create the views (default: the order read models) and start their actors."""
        if views is None:
            views = order_views(view_store, backends=view_backends, skip_unknown=skip_unknown)
        routes = dict(QUERY_VIEW if routes is None else routes)
        by_name = {view.name: view for view in views}
        router = QueryRouter.start(by_name, routes, validate)
        projectors = {}
        for view in views:
            progress = Progress(view)
            ref = Projector.start(store, progress, router, tail=tail)
            projectors[view.name] = (ref, progress)
            writer.proxy().subscribe(ref).get(timeout=30)
        return cls(store, views, router, routes, projectors, tail=tail)

    def close(self) -> None:
        """Stop the projectors and the router, then close the views."""
        for ref in self._projectors.values():
            ref.stop(timeout=30)
        self._router.stop(timeout=30)
        for view in self.views.values():
            view.close()

    # ------------------------------------------------------------ queries

    def _send(self, query: Any, after: int | None) -> tuple[DispatcherFuture[Any], int]:
        reply: DispatcherFuture[Any] = DispatcherFuture()
        ticket = next(self._tickets)  # itertools.count is atomic under the GIL
        self._router.tell(Ask(query, after, ticket, reply))
        return reply, ticket

    def _stale(self, query: Any, after: int, ticket: int) -> ConsistencyTimeout:
        self._router.tell(Cancel(ticket))
        view = view_for(self.views, self._routes, query)
        reached = view.position()
        # Straight from the view (queries are thread-safe by the View contract), not through the
        # router: a second round trip could miss the caller's (possibly tiny) timeout again and
        # turn the promised stale answer into a bare pykka.Timeout.
        return ConsistencyTimeout(view.name, after, reached, view.query(query))

    def query(self, query: Any, *, after: int | None, timeout: float) -> Any:
        """Answer ``query`` through the router (see :meth:`Engine.query`)."""
        reply, ticket = self._send(query, after)
        try:
            return reply.get(timeout=timeout)
        except pykka.Timeout:
            if after is None:
                raise EngineError(f"the query was not answered within {timeout} s") from None
            raise self._stale(query, after, ticket) from None

    async def query_async(self, query: Any, *, after: int | None, timeout: float) -> Any:
        """Answer ``query`` without blocking the event loop."""
        reply, ticket = self._send(query, after)
        try:
            return await asyncio.wait_for(bridge(reply), timeout)
        except TimeoutError:
            if after is None:
                raise EngineError(f"the query was not answered within {timeout} s") from None
            loop = asyncio.get_running_loop()
            error = await loop.run_in_executor(None, self._stale, query, after, ticket)
            raise error from None

    # ------------------------------------------------------------ progress

    def status(self, head: int) -> dict[str, ViewStatus]:
        """Return every view's progress against ``head``."""
        parked: dict[str, int] = {}
        for event in self._store.parked():
            parked[event.view] = parked.get(event.view, 0) + 1
        result = {}
        for name, progress in self._progress.items():
            status = progress.status(head)
            result[name] = msgspec.structs.replace(status, parked=parked.get(name, 0))
        return result

    def wait_all(self, position: int, timeout: float) -> bool:
        """Wait until every view has applied ``position`` (polls positions with a deadline)."""
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            if all(view.position() >= position for view in self.views.values()):
                return True
            if time.monotonic() >= deadline:
                return False
            # Waiting on a condition with a deadline: positions are plain reads, so poll them.
            threading.Event().wait(delay)
            delay = min(delay * 2, 0.02)

    # ------------------------------------------------------------ rebuild and parked events

    def rebuild(
        self, name: str | None, *, progress: Callable[[int, int], None] | None
    ) -> RebuildReport:
        """Replay the log into shadow copies and swap them in (see :meth:`Engine.rebuild`)."""
        if name is not None and name not in self.views:
            raise UnknownView(name, list(self.views))
        names = [name] if name is not None else list(self.views)
        started = time.perf_counter()
        total_events = 0
        with self._rebuild_lock:
            head = self._store.head()
            total = head * len(names)
            done_before = 0
            for view_name in names:
                shadow = self.views[view_name].new_shadow()

                def report(done: int, base: int = done_before) -> None:
                    if progress is not None:
                        progress(min(base + done, total), total)

                reparked: set[int] = set()
                total_events += replay_into(
                    self._store, shadow, head, report, parked_positions=reparked
                )
                done_before += head
                # The projector catches the shadow up with the live view and adopts it, between
                # two of its batches: queries see the old copy until that instant.
                self._projectors[view_name].ask(Swap(shadow, frozenset(reparked)), timeout=600)
            if progress is not None:
                progress(total, total)
        seconds = time.perf_counter() - started
        log.info("rebuilt", views=names, events=total_events, seconds=round(seconds, 3))
        return RebuildReport(events=total_events, seconds=seconds, views=tuple(names))

    def retry_parked(self, view: str, position: int) -> bool:
        """Ask the view's projector to apply a parked event again."""
        ref = self._projectors.get(view)
        if ref is None:
            raise UnknownView(view, list(self.views))
        return bool(ref.ask(RetryParked(position), timeout=30))
