"""The query router actor: routes each query to its view, with read-your-writes on request.

A query with ``after=position`` is answered once the view serving it has applied that position.
The router never blocks while waiting: it parks the query until the view's projector reports
(:class:`ViewAdvanced`) that the view got there. The caller gives up after its timeout and then
gets the answer as of now in :class:`ConsistencyTimeout`'s ``stale_result``.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping
from typing import Any

import msgspec
import pykka

from actors._projector import ViewAdvanced
from actors._supervision import FaultSeam, Supervised, fail, settle
from domain.errors import EngineClosed
from views import QueryRoutes, View

__all__ = ["LONG_QUERY_SECONDS", "Ask", "Cancel", "QueryRouter", "ReleaseWaiting", "run_query"]

_COMPACT_AT = 64  # heap entries per view before cancelled asks are swept out

LONG_QUERY_SECONDS = 0.0001
"""A query that held the GIL this long hands it over once before it returns (:func:`run_query`)."""


def run_query(view: View, query: Any) -> Any:
    """Answer ``query`` from ``view``; after a long query, release the GIL once.

    A thread searching back to back would otherwise hand the GIL over only when CPython forces
    it to, every switch interval (5 ms), and every thread that wakes meanwhile (the writer, the
    dispatcher, a caller) would wait that long for its turn. ``time.sleep(0)`` after a query
    longer than :data:`LONG_QUERY_SECONDS` lets them in. Measured with a search thread and a
    write load in one process, 20k orders, two alternating runs each: the load went from
    1.0-1.2k to 5.7-6.7k commands/s, and point queries asked 100 times a second from 6.6-6.9 ms
    to 1.8-2.2 ms p50. Point queries (~10-20 us) never pay it.
    """
    started = time.perf_counter()
    result = view.query(query)
    if time.perf_counter() - started > LONG_QUERY_SECONDS:
        time.sleep(0)  # hand the GIL to a waiting thread, if any
    return result


class Ask(msgspec.Struct, frozen=True):
    """Caller -> router: answer ``query`` once its view has applied ``after``."""

    query: Any
    after: int | None
    ticket: int
    reply: pykka.Future[Any]


class Cancel(msgspec.Struct, frozen=True):
    """Caller -> router: the caller stopped waiting for ``ticket``."""

    ticket: int


class ReleaseWaiting(msgspec.Struct, frozen=True):
    """Engine -> router: the engine is closing; answer every parked ask now."""


class QueryRouter(Supervised, pykka.ThreadingActor):
    """Serves queries that wait for their view (read-your-writes).

    Supervision: *resume*. A failing query fails its caller only; at stop every parked query is
    answered at once with :class:`EngineClosed`.

    Args:
        views: Every view, by name.
        routes: Finds each query's view and validates the query (before any view is asked).
        fault_seam: Called before each message is handled (tests raise there); None in use.
        parked: The dict to keep parked asks in, by ticket (its owner reads its size).
        waiting: The dict to keep each view's heap of parked (position, ticket) in (its owner
            reads whether a view's heap is empty; a cancelled ask stays there until swept).
    """

    use_daemon_thread = True
    actor_kind = "router"
    policy = "resume"
    redeliver = (ViewAdvanced, Cancel, ReleaseWaiting)

    def __init__(
        self,
        views: Mapping[str, View],
        routes: QueryRoutes,
        fault_seam: FaultSeam | None = None,
        parked: dict[int, Ask] | None = None,
        waiting: dict[str, list[tuple[int, int]]] | None = None,
    ) -> None:
        super().__init__()
        self.fault_seam = fault_seam
        self._views = dict(views)
        self._routes = routes
        # Per view: a heap of (position, ticket) and the parked asks by ticket. Shared with the
        # projectors (``waiting``), which only look whether a view's heap is empty.
        self._waiting: dict[str, list[tuple[int, int]]] = {} if waiting is None else waiting
        self._waiting.update((name, []) for name in views)
        # Shared with the read side (``parked``), which only reads its size for ``status``.
        self._asks: dict[int, Ask] = {} if parked is None else parked

    def on_receive(self, message: Any) -> Any:
        """Answer, park or cancel asks; wake parked asks when a view advances."""
        if isinstance(message, Ask):
            self._ask(message)
        elif isinstance(message, ViewAdvanced):
            for name, position in message.positions.items():
                self._wake(name, position)
        elif isinstance(message, Cancel) and self._asks.pop(message.ticket, None) is not None:
            self._compact()
        elif isinstance(message, ReleaseWaiting):
            self.on_stop()
        return None

    def on_stop(self) -> None:
        """Answer every parked query at once: nobody will wake them any more."""
        error = EngineClosed("the engine closed while this query waited for its view")
        asks = list(self._asks.values())
        self._asks.clear()
        for heap in self._waiting.values():
            heap.clear()
        for ask in asks:
            fail(ask.reply, error)

    def _compact(self) -> None:
        # A cancelled ask leaves its (position, ticket) in the heap until the view gets there;
        # callers polling a stalled view with short timeouts would grow it without bound.
        for name, heap in self._waiting.items():
            if len(heap) > _COMPACT_AT and len(heap) > 2 * len(self._asks):
                live = [entry for entry in heap if entry[1] in self._asks]
                heapq.heapify(live)
                self._waiting[name] = live

    def _ask(self, ask: Ask) -> None:
        try:
            view = self._routes.resolve(ask.query)
        except Exception as error:  # noqa: BLE001 - the caller gets InvalidQuery / UnknownView
            fail(ask.reply, error)
            return
        if ask.after is None or view.position() >= ask.after:
            self._answer(view, ask)
            return
        self._asks[ask.ticket] = ask
        heapq.heappush(self._waiting[view.name], (ask.after, ask.ticket))
        # A projector tells the router only while some query waits (see Projector's `waiting`):
        # one that advanced the view after the check above, but before the ask was parked, saw
        # nobody waiting. Reading the position again after parking closes that gap.
        self._wake(view.name, view.position())

    def _answer(self, view: View, ask: Ask) -> None:
        try:
            result = run_query(view, ask.query)
        except Exception as error:  # noqa: BLE001 - a failing query fails its caller only
            fail(ask.reply, error)
        else:
            settle(ask.reply, result)

    def _wake(self, name: str, position: int) -> None:
        heap = self._waiting.get(name)
        view = self._views.get(name)
        if not heap or view is None:
            return
        while heap and heap[0][0] <= position:
            _, ticket = heapq.heappop(heap)
            ask = self._asks.pop(ticket, None)
            if ask is not None:
                self._answer(view, ask)
