"""`ShardedEngine`: the engine's API over N shards, each an `Engine` in its own Ray actor process.

See section 3c of the design and the README section "Running on Ray". Routing: an aggregate
lives on ``cluster.shard_for(aggregate_id, shards)`` (a documented, stable BLAKE2b hash).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

from actors import CommandResult, EngineStatus, RebuildReport
from cluster._batcher import ShardBatcher, ShardFuture
from cluster._layout import record_shard_count, shard_dir, shard_for
from cluster._merge import Merger, merger_for
from cluster._ray import ShardHandle, checked_resources, connect, disconnect, wait_all
from cluster._scatter import is_int, positions_of, scatter_gather
from domain.errors import (
    EngineClosed,
    EngineError,
    InvalidCommand,
    InvalidQuery,
    InvalidSaga,
)
from domain.orders import ORDERS
from store import get_logger
from views.orders import GetCustomerOrders, GetOrderById, SearchOrders, validate_query

__all__ = ["ShardedEngine"]

log = get_logger(__name__)

_ORDER_QUERIES: Final = (GetOrderById, GetCustomerOrders, SearchOrders)
_SHARD_SHARE: Final = 0.8  # of a query's timeout a shard may wait for `after`: the rest is the hop


class ShardedEngine:
    """The engine's API over N shards; open it with :meth:`ShardedEngine.open`.

    Attributes:
        shards: The number of shards.
        path: The sharded data directory.
    """

    def __init__(self, _token: object, **parts: Any) -> None:
        if _token is not _OPEN:
            raise TypeError("use ShardedEngine.open(path, ...)")
        self.path: str = parts["path"]
        self.shards: int = parts["shards"]
        self._handles: list[ShardHandle] = parts["handles"]
        self._batchers = [
            ShardBatcher(
                handle,
                max_commands=parts["batch_commands"],
                window=parts["batch_window"],
                max_in_flight=parts["batches_in_flight"],
            )
            for handle in self._handles
        ]
        self._deciders: dict[type, Any] = parts["deciders"]
        self._mergers: Mapping[type, Merger] = parts["mergers"]
        self._routes: Mapping[type, Callable[[Any], str]] = parts["routes"]
        self._started_ray: bool = parts["started_ray"]
        self._closed = False
        self._close_lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        shards: int = 4,
        durability: str = "sync",
        ray_address: str | None = None,
        shard_cpus: float = 0.0,
        shard_resources: Mapping[int, Mapping[str, float]] | None = None,
        batch_commands: int = 1000,
        batch_window: float = 0.001,
        batches_in_flight: int = 4,
        start_timeout: float = 120.0,
        mergers: Mapping[type, Merger] | None = None,
        routes: Mapping[type, Callable[[Any], str]] | None = None,
        **engine_options: Any,
    ) -> ShardedEngine:
        """Open (creating if needed) a sharded engine over the data directory ``path``.

        Args:
            path: The sharded data directory; shard ``i`` keeps its data in ``path/shard-<i>``
                on the machine that runs it.
            shards: How many shards; fixed when ``path`` is created.
            durability: ``"sync"`` or ``"async"``, as for ``Engine.open``.
            ray_address: ``"auto"`` or ``host:port`` of a Ray cluster to join; None uses the
                Ray instance this process already has, or starts a local one (stopped at close).
            shard_cpus: CPUs Ray reserves per shard (0 lets any number share a node).
            shard_resources: Pins shards to nodes: for a shard index, the Ray custom resources
                its actor needs, e.g. ``{1: {"node-b": 0.01}}`` for a node started with
                ``ray start --resources='{"node-b": 1}'``. A restarted shard waits for a node
                that has them (the same machine coming back, or another holding its data
                directory); shards left out go anywhere.
            batch_commands: Most commands per Ray call.
            batch_window: Seconds a batch waits for more commands while others are in flight.
            batches_in_flight: Most batches in flight per shard.
            start_timeout: Seconds to wait for every shard to open its engine.
            mergers: For query types of your own read models: a function merging the answers
                of every shard into one (order queries have theirs).
            routes: For query types of your own read models that are about one aggregate: a
                function returning that aggregate's id (e.g. ``{GetStockLevel: lambda q:
                q.sku}``); such a query goes to that aggregate's shard alone, like
                ``GetOrderById``, and needs no merger.
            engine_options: Further ``Engine.open`` options, applied to every shard. They must
                be importable in the workers (nothing defined in ``__main__``).

        Raises:
            ShardCountMismatch: ``path`` was created with another shard count (checked before
                any shard starts).
            LogLocked: Another engine holds one of the shards' directories.
            ShardUnavailable: A shard did not open within ``start_timeout``.
            InvalidSaga: ``sagas=`` was given: each shard would run them over its own log and
                send their commands to its own engine, not to the target aggregate's shard.
        """
        for saga in engine_options.get("sagas") or ():
            raise InvalidSaga(
                str(getattr(saga, "name", saga)),
                "sagas do not run on a ShardedEngine yet (each shard would issue their commands "
                "to itself, whatever shard owns the target aggregate); run them on an Engine",
            )
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be an int >= 1, not {shards!r}")
        resources = checked_resources(shard_resources, shards)
        record_shard_count(path, shards)
        deciders = engine_options.get("deciders") or [ORDERS]
        by_type = {ct: decider for decider in deciders for ct in decider.command_types}
        started = connect(ray_address)
        handles: list[ShardHandle] = []
        try:
            handles.extend(
                ShardHandle(
                    i,
                    str(shard_dir(path, i).resolve()),
                    durability,
                    dict(engine_options),
                    num_cpus=shard_cpus,
                    resources=resources.get(i, {}),
                )
                for i in range(shards)
            )
            wait_all(handles, "pid", timeout=start_timeout)
        except BaseException:
            _kill_all(handles)
            if started:
                disconnect()
            raise
        log.info("sharded_engine_opened", path=str(path), shards=shards, durability=durability)
        return cls(
            _OPEN,
            path=str(path),
            shards=shards,
            handles=handles,
            batch_commands=batch_commands,
            batch_window=batch_window,
            batches_in_flight=batches_in_flight,
            deciders=by_type,
            mergers=dict(mergers or {}),
            routes=dict(routes or {}),
            started_ray=started,
        )

    def close(self, timeout: float = 30.0) -> None:
        """Send queued commands, drain and close every shard, stop their processes (idempotent).

        Nothing acknowledged is lost. Stops Ray if :meth:`open` started it.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        try:
            for batcher in self._batchers:
                batcher.close(max(0.0, deadline - time.monotonic()))
            wait_all(self._handles, "close", timeout, timeout=max(0.0, deadline - time.monotonic()))
        except EngineError:  # a dead shard has nothing to drain; its data is on disk
            log.warning("shard_close_failed", exc_info=True)
        finally:
            _kill_all(self._handles)
            if self._started_ray:
                disconnect()
            log.info("sharded_engine_closed", path=self.path)

    def __enter__(self) -> Self:
        """Return the engine itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the engine."""
        self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed("the sharded engine is closed; open a new ShardedEngine")

    # ------------------------------------------------------------ commands

    def shard_of(self, aggregate_id: str) -> int:
        """Return the shard that owns ``aggregate_id`` (a stable hash; see ``shard_for``)."""
        return shard_for(aggregate_id, self.shards)

    def submit(self, command: Any) -> ShardFuture[CommandResult]:
        """Send a command without waiting; ``.get(timeout=...)`` on the future waits for it.

        Raises:
            EngineClosed: The engine was closed.
            InvalidCommand: Not a command of a registered aggregate type.
        """
        self._check_open()
        decider = self._deciders.get(type(command))
        if decider is None:
            raise InvalidCommand(
                "",
                "unknown_command",
                f"{type(command).__name__} is not a command of any registered aggregate type",
            )
        try:
            aggregate_id = decider.aggregate_id(command)
        except AttributeError as error:
            raise InvalidCommand("", "invalid_type", str(error)) from error
        if not isinstance(aggregate_id, str):
            raise InvalidCommand(
                "", "invalid_id", f"the aggregate id must be a string, not {aggregate_id!r}"
            )
        return self._batchers[shard_for(aggregate_id, self.shards)].put(command)

    def execute(self, command: Any, *, timeout: float = 10.0) -> CommandResult:
        """Run a command on its shard and return once its events are committed.

        Raises:
            ShardUnavailable: The shard is down or did not answer in time; the command may or
                may not have committed: re-send it with the same ``command_id``.
            EngineError: As ``Engine.execute`` (rejected, not found, conflict...).
        """
        return self.submit(command).get(timeout)

    async def execute_async(self, command: Any, *, timeout: float = 10.0) -> CommandResult:
        """Like :meth:`execute`, without ever blocking the event loop."""
        return await self.submit(command).get_async(timeout)

    # ------------------------------------------------------------ queries

    def query(self, query: Any, *, after: Any = None, timeout: float = 5.0) -> Any:
        """Answer ``query``: from its aggregate's shard, or merged over every shard.

        Args:
            query: An order query, or a query of your read models (see ``mergers``).
            after: None, a ``CommandResult`` (wait for its shard to show it), or a mapping
                ``{shard: position}`` like :meth:`heads` returns (shards left out are not waited
                for).
            timeout: Seconds before giving up; the answer or an error comes within it.

        Raises:
            InvalidQuery: The query or ``after`` is malformed, or no merge is known for its type.
            ConsistencyTimeout: A shard did not reach its position in time; ``.stale_result``
                is the merged answer as of now (``.view``, ``.wanted`` and ``.reached`` are those
                of the first such shard).
            ShardUnavailable: A shard the query needs is down or did not answer in time.
        """
        self._check_open()
        wanted = positions_of(after, self.shards)
        if isinstance(query, _ORDER_QUERIES) or type(query).__name__ == "GetOrderStats":
            validate_query(query)
        shard_wait = timeout * _SHARD_SHARE
        route = self._routes.get(type(query))
        if isinstance(query, GetOrderById) or route is not None:
            aggregate_id = query.order_id if route is None else route(query)
            if not isinstance(aggregate_id, str):
                raise InvalidQuery(
                    "query",
                    type(query).__name__,
                    f"a routes= function returning the aggregate id as a str, not {aggregate_id!r}",
                )
            handle = self._handles[self.shard_of(aggregate_id)]
            ref = handle.call("query", query, wanted.get(handle.index), shard_wait)
            return handle.get(ref, timeout)
        merge = merger_for(query, self._mergers)
        if merge is None:
            raise InvalidQuery(
                "query",
                type(query).__name__,
                "an order query, or a type given to ShardedEngine.open(mergers= or routes=)",
            )
        return scatter_gather(
            self._handles, query, merge, wanted=wanted, timeout=timeout, shard_wait=shard_wait
        )

    async def query_async(self, query: Any, *, after: Any = None, timeout: float = 5.0) -> Any:
        """Like :meth:`query`, without ever blocking the event loop (it runs on a thread)."""
        return await asyncio.to_thread(self.query, query, after=after, timeout=timeout)

    # ------------------------------------------------------------ operations

    def heads(self, *, of: Collection[int] | None = None, timeout: float = 10.0) -> dict[int, int]:
        """Return each shard's last committed position (a mapping ``query(after=...)`` takes).

        Args:
            of: Only these shards (default: every shard); a shard that is down fails only the
                calls that ask it.
            timeout: Seconds to wait for the shards.

        Raises:
            ShardUnavailable: A shard asked did not answer within ``timeout``.
        """
        self._check_open()
        handles = self._handles if of is None else [self._handles[self._index(i)] for i in of]
        return wait_all(handles, "head", timeout=timeout)

    def stream_head(
        self, aggregate_id: str, *, stream_type: str = "order", timeout: float = 10.0
    ) -> tuple[int, int]:
        """Return a stream's version and its last event's position in its shard's log.

        Args:
            aggregate_id: The stream (aggregate) id; it is looked up on its own shard.
            stream_type: The aggregate type's ``stream_type`` (orders by default).
            timeout: Seconds to wait for the shard.

        Returns:
            ``(version, position)``, ``(0, 0)`` if the stream has no event.

        Raises:
            ShardUnavailable: The shard did not answer within ``timeout``.
        """
        self._check_open()
        handle = self._handles[self.shard_of(aggregate_id)]
        answer: tuple[int, int] = handle.get(
            handle.call("stream_head", aggregate_id, stream_type), timeout
        )
        return answer

    def _index(self, shard: int) -> int:
        if not is_int(shard) or not 0 <= shard < self.shards:
            raise ValueError(f"no shard {shard!r}: shards are 0 to {self.shards - 1}")
        return shard

    def status(self, *, timeout: float = 10.0) -> dict[int, EngineStatus]:
        """Return each shard's ``EngineStatus``, by shard.

        Raises:
            ShardUnavailable: A shard did not answer within ``timeout``.
        """
        self._check_open()
        return wait_all(self._handles, "status", timeout=timeout)

    def shard_pids(self, *, timeout: float = 10.0) -> dict[int, int]:
        """Return the OS process id of each shard (for operators), by shard."""
        self._check_open()
        return wait_all(self._handles, "pid", timeout=timeout)

    def rebuild(self, view: str | None = None, *, timeout: float = 600.0) -> RebuildReport:
        """Rebuild the views (all, or the one named) on every shard at once.

        Returns:
            The events replayed over every shard, and the wall time it took.
        """
        self._check_open()
        began = time.monotonic()
        reports: Mapping[int, RebuildReport] = wait_all(
            self._handles, "rebuild", view, timeout=timeout
        )
        return RebuildReport(
            events=sum(report.events for report in reports.values()),
            seconds=time.monotonic() - began,
            views=reports[0].views,
        )


_OPEN = object()


def _kill_all(handles: Sequence[ShardHandle]) -> None:
    for handle in handles:
        try:
            handle.kill()
        except Exception:  # noqa: BLE001 - already dead, or Ray is gone: nothing left to stop
            log.debug("shard_kill_failed", shard=handle.index)
