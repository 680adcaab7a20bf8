"""The shard: one `Engine` over one data directory, run as a Ray actor in its own process.

The class is plain Python (``cluster._ray`` turns it into a Ray actor class), so it is typed and
importable in every worker. Its methods never raise: they return the answer or a
:class:`Failure` carrying the engine's own error, so that callers get the typed ``EngineError``
(a raised error would reach them wrapped in Ray's ``RayTaskError``).

Commands travel in batches in two calls: :meth:`Shard.submit_batch` runs in Ray's default,
single-threaded concurrency group, so batches are handed to the engine strictly in the order
the client sent them (ordering per aggregate holds across the hop); :meth:`Shard.collect` runs
in the ``wait`` group and waits for the batch's results, so the next batch is submitted while
the previous one commits. Queries and status run in the ``read`` group, never behind commands.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

import msgspec
import pykka
import ray

from actors import CommandResult, Engine, EngineStatus, RebuildReport
from domain.errors import CommandTimeout, ConsistencyTimeout, EngineError, InvalidCommand
from views._order_types import MAX_PAGE_SIZE
from views.orders import GetCustomerOrders, OrderView, Page, SearchOrders

__all__ = ["CONCURRENCY_GROUPS", "LOST", "Failure", "Shard", "TopAnswer", "primary_key"]

CONCURRENCY_GROUPS: Final = {"wait": 32, "read": 8}
"""Threads per Ray concurrency group of a shard: ``wait`` holds ``collect`` calls waiting for
commits (and rebuilds), ``read`` serves queries, status and pids (never queued behind commands).
Everything else runs in Ray's default group: one thread, in the order the client sent it."""

LOST: Final = "lost"
""":meth:`Shard.collect`'s answer for a batch submitted to an earlier incarnation of the shard."""


class Failure:
    """An error a shard answers with instead of raising it (see the module docstring).

    Attributes:
        error: The engine's error.
    """

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (Failure, (self.error,))


class TopAnswer(msgspec.Struct, frozen=True):
    """A shard's share of a paginated query: its first items in its own order.

    Attributes:
        items: At least the first ``k`` items asked for (fewer if the shard has fewer), plus every
            following item whose primary sort key equals the ``k``-th's (so the merge can break
            ties its own way).
        total: How many items match on this shard.
    """

    items: list[OrderView]
    total: int


def primary_key(query: GetCustomerOrders | SearchOrders, item: OrderView) -> Any:
    """The value a page of ``query`` is sorted by first (``created_at`` for a customer's orders)."""
    if isinstance(query, GetCustomerOrders):
        return item.created_at
    return getattr(item, query.sort_by)


class Shard:
    """Owns one :class:`~actors.Engine` over ``path``; see the module docstring.

    Args:
        index: The shard's index (stamped on every ``CommandResult``).
        path: The shard's own data directory.
        durability: ``"sync"`` or ``"async"``.
        options: Further ``Engine.open`` keyword options.
    """

    def __init__(self, index: int, path: str, durability: str, options: Mapping[str, Any]) -> None:
        self._index = index
        self._path = path
        self._durability = durability
        self._options = dict(options)
        self._incarnation = uuid.uuid4().hex
        self._open_lock = threading.Lock()
        self._engine: Engine | None = None
        self._open_error: EngineError | None = None
        self._batches: dict[int, list[Any]] = {}
        self._arrived = threading.Condition()
        try:
            self._open()
        except EngineError as error:  # answered on every call (and retried) instead of dying
            self._open_error = error

    def _open(self) -> Engine:
        # A restarted shard finds its predecessor's lock free: the kernel drops a flock when its
        # holder dies, before Ray sees the death. LogLocked here means a live holder.
        engine = Engine.open(
            self._path,
            durability=self._durability,  # type: ignore[arg-type]  # checked by Engine.open
            **self._options,
        )
        self._engine = engine
        self._open_error = None
        return engine

    def _engine_now(self) -> Engine:
        engine = self._engine
        if engine is not None:
            return engine
        with self._open_lock:
            if self._engine is not None:
                return self._engine
            return self._open()

    # ------------------------------------------------------------ commands

    def submit_batch(self, batch_id: int, commands: list[Any]) -> str:
        """Hand ``commands`` to the engine in order; :meth:`collect` returns their outcomes.

        Returns:
            This incarnation's id (``collect`` compares it with its own).
        """
        outcomes: list[Any] = []
        try:
            engine = self._engine_now()
        except EngineError as error:
            outcomes = [Failure(error)] * len(commands)
        else:
            for command in commands:
                try:
                    outcomes.append(engine.submit(command))
                except Exception as error:  # noqa: BLE001 - answered to that command's caller
                    outcomes.append(Failure(error))
        with self._arrived:
            self._batches[batch_id] = outcomes
            self._arrived.notify_all()
        return self._incarnation

    @ray.method(concurrency_group="wait")
    def collect(self, incarnation: str, batch_id: int, timeout: float) -> list[Any] | str:
        """Wait for the outcomes of batch ``batch_id``, each a ``CommandResult`` or a ``Failure``.

        Returns:
            The outcomes in the batch's order, or :data:`LOST` if the batch went to an earlier
            incarnation of this shard (its process died).
        """
        if incarnation != self._incarnation:
            return LOST
        deadline = time.monotonic() + timeout
        with self._arrived:
            if not self._arrived.wait_for(lambda: batch_id in self._batches, timeout):
                return LOST
            outcomes = self._batches.pop(batch_id)
        answers: list[Any] = []
        for outcome in outcomes:
            if isinstance(outcome, Failure):
                answers.append(outcome)
                continue
            try:
                result: CommandResult = outcome.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                answers.append(Failure(CommandTimeout("", timeout)))
            except Exception as error:  # noqa: BLE001 - answered to that command's caller
                answers.append(Failure(error))
            else:
                answers.append(msgspec.structs.replace(result, shard=self._index))
        return answers

    # ------------------------------------------------------------ queries and operations

    @ray.method(concurrency_group="read")
    def query(self, query: Any, after: int | None, timeout: float) -> Any:
        """Answer ``query`` from this shard's views (see ``Engine.query``)."""
        try:
            return self._engine_now().query(query, after=after, timeout=timeout)
        except Exception as error:  # noqa: BLE001 - the caller raises it
            return Failure(error)

    @ray.method(concurrency_group="read")
    def query_top(
        self, query: GetCustomerOrders | SearchOrders, k: int, after: int | None, timeout: float
    ) -> Any:
        """Answer this shard's share of a page: see :class:`TopAnswer`.

        A ``ConsistencyTimeout`` comes back as a ``Failure`` whose ``.stale_result`` is the
        stale ``TopAnswer``.
        """
        try:
            return self._top(query, k, after, timeout)
        except Exception as error:  # noqa: BLE001 - the caller raises it
            return Failure(error)

    def _top(
        self, query: GetCustomerOrders | SearchOrders, k: int, after: int | None, timeout: float
    ) -> Any:
        engine = self._engine_now()
        size = min(k, MAX_PAGE_SIZE)
        stale: ConsistencyTimeout | None = None
        try:
            first: Page[OrderView] = engine.query(
                msgspec.structs.replace(query, page=1, page_size=size), after=after, timeout=timeout
            )
        except ConsistencyTimeout as error:
            stale = error
            first = error.stale_result  # type: ignore[assignment]  # the view's own page
        items = list(first.items)
        page, last = 1, first
        # More pages while fewer than k, or while the k-th item's key still continues (ties).
        while len(last.items) == size and (
            len(items) < k or primary_key(query, items[-1]) == primary_key(query, items[k - 1])
        ):
            page += 1
            last = engine.query(msgspec.structs.replace(query, page=page, page_size=size))
            items.extend(last.items)
        if len(items) > k:
            boundary = primary_key(query, items[k - 1])
            extra = k
            while extra < len(items) and primary_key(query, items[extra]) == boundary:
                extra += 1
            items = items[:extra]
        answer = TopAnswer(items=items, total=first.total)
        if stale is not None:
            return Failure(ConsistencyTimeout(stale.view, stale.wanted, stale.reached, answer))
        return answer

    @ray.method(concurrency_group="read")
    def head(self) -> int | Failure:
        """Return the last committed position of this shard's log."""
        try:
            return self._engine_now().store.head()
        except Exception as error:  # noqa: BLE001 - the caller raises it
            return Failure(error)

    @ray.method(concurrency_group="read")
    def stream_head(self, aggregate_id: str, stream_type: str) -> tuple[int, int] | Failure:
        """Return a stream's version and the position of its last event ((0, 0) if none)."""
        try:
            store = self._engine_now().store
            try:
                version = store.stream_version(aggregate_id, stream_type=stream_type)
            except InvalidCommand:  # an id no stream can have (NUL, too long): it has none
                return 0, 0
            if version == 0:
                return 0, 0
            # Events come from version `version` on: the first made this version.
            events = store.read_stream(aggregate_id, version, stream_type=stream_type)
            return version, events[0].position
        except Exception as error:  # noqa: BLE001 - the caller raises it
            return Failure(error)

    @ray.method(concurrency_group="read")
    def status(self) -> EngineStatus | Failure:
        """Return the engine's status."""
        try:
            return self._engine_now().status()
        except Exception as error:  # noqa: BLE001 - the caller raises it
            return Failure(error)

    @ray.method(concurrency_group="wait")
    def rebuild(self, view: str | None) -> RebuildReport | Failure:
        """Rebuild the views (all, or ``view``)."""
        try:
            return self._engine_now().rebuild(view)
        except Exception as error:  # noqa: BLE001 - the caller raises it
            return Failure(error)

    @ray.method(concurrency_group="read")
    def pid(self) -> int | Failure:
        """Return this process's id, or the error that keeps the engine from opening."""
        if self._engine is None:
            try:
                self._engine_now()
            except EngineError as error:
                return Failure(error)
        return os.getpid()

    def close(self, timeout: float) -> None:
        """Drain and close the engine (the actor itself is then killed by its owner)."""
        engine = self._engine
        if engine is not None:
            engine.close(timeout=timeout)
