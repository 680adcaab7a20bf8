"""The read side: views, their projectors, the query router and rebuild, behind one object."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import pykka

from actors._future import DispatcherFuture, bridge
from actors._lag_bound import LagBound
from actors._messages import BoundLag
from actors._progress import Progress, ViewStatus
from actors._projector import Projector, RetryParked, RetryView, Teller
from actors._rebuild import RebuildReport, rebuild_here, rebuild_split
from actors._router import Ask, Cancel, QueryRouter, ReleaseWaiting, run_query
from actors._snapshots import ViewSnapshots
from actors._supervision import FaultSeam
from actors._tail import EventTail
from domain.errors import ConsistencyTimeout, EngineError, UnknownView
from store import ProjectionLog, ViewStore, get_logger
from views import QueryRoutes, ReadModel, View, bind_views
from views.orders import order_read_models

if TYPE_CHECKING:
    from actors._projection_process import ProjectionProcess

__all__ = ["SNAPSHOT_EVERY", "ReadSide", "ViewStatus"]

SNAPSHOT_EVERY = 100_000
"""Events a memory view applies between two background snapshots (also taken at close)."""

log = get_logger(__name__)


def _unanswered(heaps: dict[str, list[tuple[int, int]]]) -> Callable[[str, int], bool]:
    """Return whether a query parked in the router for a view at or before a position waits.

    Read from the projector's thread: the router's per-view heaps of (position, ticket), whose
    first entry is the lowest position waited for (a cancelled ask stays there until its
    position is reached: a pause for it ends then, too).
    """

    def due(name: str, position: int) -> bool:
        heap = heaps.get(name)
        if not heap:
            return False
        try:
            return heap[0][0] <= position
        except IndexError:  # emptied by the router since the test above
            return False

    return due


class ReadSide:
    """Owns the views, the projector actors that feed them, and the query router actor."""

    def __init__(
        self,
        store: ProjectionLog,
        views: Sequence[View],
        router: pykka.ActorRef[QueryRouter],
        routes: QueryRoutes,
        *,
        projectors: Mapping[str, pykka.ActorRef[Projector]],
        progress: Sequence[Progress],
        tail: EventTail | None = None,
        snapshots: ViewSnapshots | None = None,
        parked: dict[int, Any] | None = None,
        heaps: dict[str, list[tuple[int, int]]] | None = None,
        remote: ProjectionProcess | None = None,
    ) -> None:
        self._store = store
        # Views a projection process keeps (process mode): served here, projected there.
        self.remote = remote
        self._parked_asks: dict[int, Any] = {} if parked is None else parked
        self._heaps: dict[str, list[tuple[int, int]]] = {} if heaps is None else heaps
        self.tail = tail
        self.snapshots = snapshots
        self.views = {view.name: view for view in views}
        self._router = router
        self._routes = routes
        self._projectors = dict(projectors)  # view name -> the projector feeding it
        self._progress = {p.view.name: p for p in progress}
        self._rebuild_lock = threading.Lock()
        self._tickets = itertools.count(1)

    @classmethod
    def start(
        cls,
        store: ProjectionLog,
        subscribe: Callable[[Any], None],
        *,
        views: Sequence[ReadModel | View] | None,
        view_backends: Mapping[str, Literal["memory", "lmdb"]] | None,
        skip_unknown: bool,
        view_store: ViewStore | None = None,
        tail: EventTail | None = None,
        snapshot_every: int = SNAPSHOT_EVERY,
        fault_seam: FaultSeam | None = None,
        served: Sequence[View] = (),
        advanced_to: Teller | None = None,
        waiting: Callable[[], int] | None = None,
        wanted: Callable[[str], bool] | None = None,
        remote: ProjectionProcess | None = None,
    ) -> ReadSide:
        """Create the views (default: the order read models) and start their actors.

        ``subscribe`` registers each projector for the log's head notifications (the writer's
        ``subscribe``). ``served`` views are answered and waited for here but projected by
        ``remote`` (a projection process; it wakes waiting queries through the router).
        ``advanced_to`` gets the projectors' :class:`ViewAdvanced` instead of the local router
        (in a projection process: the wire to the engine), after every step, and after each
        view's share of a step while ``waiting()`` (queries wait there; ``wanted(name)``: for
        that view, stepped first).

        ``views`` may hold read models (bound here to the backend ``view_backends`` names, see
        :func:`views.bind_views`) and views already bound, mixed. Each query type is routed to
        the view whose ``query_types`` hold it. Memory views load their snapshots (when
        ``view_store`` is given) before the projector starts, so it replays only the tail.

        Raises:
            InvalidView: The views cannot be kept (see :func:`views.bind_views`), or two answer
                one query type; nothing was started.
            UnknownView: ``view_backends`` names no view.
        """
        items = order_read_models() if views is None else views
        views = bind_views(items, view_store, backends=view_backends, skip_unknown=skip_unknown)
        routes = QueryRoutes([*views, *served])
        snapshots = None
        if view_store is not None:
            snapshots = ViewSnapshots(view_store.snapshots, views, snapshot_every)
            snapshots.restore_all(store.head())
        by_name = {view.name: view for view in [*views, *served]}
        parked: dict[int, Any] = {}
        heaps: dict[str, list[tuple[int, int]]] = {}
        router = QueryRouter.start(by_name, routes, fault_seam, parked, heaps)
        progress = [Progress(view) for view in views]
        # One projector feeds every view (one thread woken per commit, not one per view); a view
        # that declares `isolated = True` gets its own, so that a slow or stuck apply of it never
        # holds the others back.
        shared = [p for p in progress if not getattr(p.view, "isolated", False)]
        groups = [[p] for p in progress if p not in shared]
        if shared:
            groups.insert(0, shared)
        projectors: dict[str, pykka.ActorRef[Projector]] = {}
        for group in groups:
            ref = Projector.start(
                store,
                group,
                router if advanced_to is None else advanced_to,
                tail=tail,
                on_batch=snapshots.on_batch if snapshots is not None else None,
                waiting=parked.__len__ if advanced_to is None else waiting,
                wanted=(lambda name: bool(heaps.get(name))) if advanced_to is None else wanted,
                due=_unanswered(heaps) if advanced_to is None else None,
                report_steps=advanced_to is not None,
                fault_seam=fault_seam,
            )
            subscribe(ref)
            projectors.update((p.view.name, ref) for p in group)
        return cls(
            store,
            [*views, *served],
            router,
            routes,
            projectors=projectors,
            progress=progress,
            tail=tail,
            snapshots=snapshots,
            parked=parked,
            heaps=heaps,
            remote=remote,
        )

    @property
    def router(self) -> pykka.ActorRef[QueryRouter]:
        """The query router (a projection process's :class:`ViewAdvanced` goes there)."""
        return self._router

    @property
    def queries_waiting(self) -> int:
        """Return how many queries are parked in the router, waiting for their view."""
        return len(self._parked_asks)  # a dict's size is read atomically

    def waiting_views(self) -> frozenset[str]:
        """Return the views some query waits for (a hint: it may lag the router a moment)."""
        return frozenset(name for name, heap in list(self._heaps.items()) if heap)

    def close(self) -> None:
        """Stop the projector and the router, snapshot the memory views, close the views."""
        try:
            if self.remote is not None:
                self.remote.stop()  # first: its views' environment closes after this
            for ref in {ref.actor_urn: ref for ref in self._projectors.values()}.values():
                ref.stop(timeout=30)
            self._router.stop(timeout=30)
            if self.snapshots is not None:
                self.snapshots.close()
        finally:
            for view in self.views.values():
                try:
                    view.close()
                except Exception:  # one view's failing close must not keep the others open
                    log.exception("view_close_failed", view=view.name)

    def release_waiting(self) -> None:
        """Answer every parked query now with EngineClosed (the engine is closing)."""
        try:
            self._router.tell(ReleaseWaiting())
        except pykka.ActorDeadError:
            log.debug("router_already_stopped")  # its on_stop answered them

    # ------------------------------------------------------------ queries

    def _send(self, query: Any, after: int | None) -> tuple[DispatcherFuture[Any], int]:
        reply: DispatcherFuture[Any] = DispatcherFuture()
        ticket = next(self._tickets)  # itertools.count is atomic under the GIL
        self._router.tell(Ask(query, after, ticket, reply))
        return reply, ticket

    def _cancel(self, ticket: int) -> None:
        try:
            self._router.tell(Cancel(ticket))
        except pykka.ActorDeadError:
            log.debug("router_already_stopped")  # nothing is parked any more

    def _stale(self, query: Any, after: int, ticket: int) -> ConsistencyTimeout:
        self._cancel(ticket)
        view = self._routes.view_for(query)
        reached = view.position()
        # Straight from the view (queries are thread-safe by the View contract), not through the
        # router: a second round trip could miss the caller's (possibly tiny) timeout again and
        # turn the promised stale answer into a bare pykka.Timeout.
        return ConsistencyTimeout(view.name, after, reached, view.query(query))

    def query(self, query: Any, *, after: int | None, timeout: float) -> Any:
        """Answer ``query`` (see :meth:`Engine.query`).

        A query that need not wait (no ``after``, or its view is already there) runs on the
        caller's own thread: views are thread-safe, so a long search never queues a point query
        behind it, and the router round trip (two thread hand-offs) is saved. Only a query that
        must wait for its view goes to the router, which parks it until the view gets there.

        A query that ran long then hands the GIL over once before it returns (see
        :func:`~actors._router.run_query`).
        """
        view = self._routes.resolve(query)
        if after is None or view.position() >= after:
            return run_query(view, query)
        reply, ticket = self._send(query, after)
        try:
            return reply.get(timeout=timeout)
        except pykka.Timeout:
            raise self._stale(query, after, ticket) from None

    async def query_async(self, query: Any, *, after: int | None, timeout: float) -> Any:
        """Answer ``query`` without blocking the event loop.

        A query that need not wait runs on a thread of the loop's default executor, not on the
        router's one thread: a long search never holds up the point queries asked after it.
        """
        view = self._routes.resolve(query)
        if after is None or view.position() >= after:
            loop = asyncio.get_running_loop()
            try:
                return await asyncio.wait_for(
                    loop.run_in_executor(None, run_query, view, query), timeout
                )
            except TimeoutError:
                raise EngineError(f"the query was not answered within {timeout} s") from None
        reply, ticket = self._send(query, after)
        try:
            return await asyncio.wait_for(bridge(reply), timeout)
        except asyncio.CancelledError:
            # The caller gave up: its parked ask must not wait in the router for ever.
            self._cancel(ticket)
            raise
        except TimeoutError:
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
        if self.remote is not None:
            for name, status in self.remote.view_status(head).items():
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
        return self.rebuild_views([name] if name is not None else list(self.views), progress)

    def rebuild_views(
        self, names: list[str], progress: Callable[[int, int], None] | None
    ) -> RebuildReport:
        """Rebuild the views ``names`` with one scan of the log per process (see :meth:`rebuild`).

        Raises:
            UnknownView: A name is not one of this read side's views.
        """
        for name in names:
            if name not in self.views:
                raise UnknownView(name, list(self.views))
        remote = self.remote
        if remote is not None and any(view in remote.names for view in names):
            # The projection process rebuilds its own views (its scan, its swaps); the views
            # of this process are rebuilt here as usual.
            return self._rebuild_split(remote, names, progress)
        return self._rebuild_here(names, progress)

    def _rebuild_here(
        self, names: list[str], progress: Callable[[int, int], None] | None
    ) -> RebuildReport:
        # The procedure is actors._rebuild's; the log line stays here, under this logger.
        report = rebuild_here(
            self._store, self.views, self._projectors, names, progress, lock=self._rebuild_lock
        )
        log.info("rebuilt", views=names, events=report.events, seconds=round(report.seconds, 3))
        return report

    def _rebuild_split(
        self,
        remote: ProjectionProcess,
        names: list[str],
        progress: Callable[[int, int], None] | None,
    ) -> RebuildReport:
        return rebuild_split(self._store, remote, names, progress, self._rebuild_here)

    def bound_lag(self, limit: int, hold: Callable[[bool], None]) -> list[LagBound]:
        """Bound the views' lag (``max_view_lag``); return the bounds, for the writer to tell.

        ``hold(True)`` while any projector's views are more than ``limit`` events behind,
        ``hold(False)`` once none is. Subscribe each bound returned to the writer's heads.
        """
        lock = threading.Lock()
        held: set[int] = set()

        def holder(index: int) -> Callable[[bool], None]:
            def one(on: bool) -> None:
                with lock:
                    if on:
                        held.add(index)
                    else:
                        held.discard(index)
                    hold(bool(held))

            return one

        bounds = []
        refs = {ref.actor_urn: ref for ref in self._projectors.values()}.values()
        for index, ref in enumerate(refs):
            bound = LagBound(limit, holder(index))
            ref.ask(BoundLag(bound), timeout=30)  # counting its views before the writer tells
            bounds.append(bound)
        return bounds

    def retry_parked(self, view: str, position: int) -> bool:
        """Ask the view's projector to apply a parked event again."""
        if view not in self.views:
            raise UnknownView(view, list(self.views))
        if self.remote is not None and view in self.remote.names:
            return self.remote.retry_parked(view, position)
        return bool(self._projectors[view].ask(RetryParked(view, position), timeout=30))

    def retry_view(self, view: str) -> None:
        """Ask the view's projector to try the view again now (see :meth:`Engine.retry_view`)."""
        if view not in self.views:
            raise UnknownView(view, list(self.views))
        if self.remote is not None and view in self.remote.names:
            self.remote.retry_view(view)
            return
        self._projectors[view].ask(RetryView(view), timeout=30)
