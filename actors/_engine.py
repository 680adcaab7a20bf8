"""The `Engine` facade: the public API of the contract, over the actors and the store."""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, cast

import pykka

from actors._admission import admit, fingerprint
from actors._assembly import assemble, take_apart
from actors._dispatch import Dispatcher
from actors._future import CommandFuture, DispatcherFuture, bridge
from actors._gate import InFlightGate
from actors._housekeeping import Housekeeper
from actors._idempotency import Idempotency
from actors._lag_bound import check_max_view_lag
from actors._messages import CommandResult, Execute
from actors._read_wiring import check_projection
from actors._readside import ReadSide
from actors._rebuild import RebuildReport
from actors._registry import AggregateRegistry, tune_collector
from actors._retention import Retention
from actors._saga_spec import check_sagas
from actors._sagas import Sagas
from actors._status import EngineStatus
from actors._supervision import FaultSeam, guarded, guarded_async
from actors._switching import ENGINE_SWITCH_INTERVAL, check_switch_interval, tune_switching
from actors._writer import LogWriter
from domain.errors import CommandTimeout
from domain.orders import ORDERS
from store import (
    DEFAULT_IDEMPOTENCY_WINDOW,
    BackupReport,
    Codec,
    Durability,
    EventStore,
    IdempotencyWindow,
    ViewStore,
    get_logger,
)
from store._copy import backup_open
from store._retention import normalize_window

__all__ = ["Engine", "EngineStatus"]

log = get_logger(__name__)


class Engine:
    """An embedded CQRS / event-sourcing engine over one data directory.

    Open it with :meth:`Engine.open`; use it as a context manager or call :meth:`close`.
    """

    def __init__(self, _token: object, **parts: Any) -> None:
        if _token is not _OPEN:
            raise TypeError("use Engine.open(path, ...)")
        self._store: EventStore = parts["store"]
        self._view_store: ViewStore = parts["view_store"]
        self._dispatcher: Dispatcher = parts["dispatcher"]
        self._writer: pykka.ActorRef[LogWriter] = parts["writer"]
        self._routes: dict[type, AggregateRegistry] = parts["routes"]
        self._registries: list[AggregateRegistry] = parts["registries"]
        self._read: ReadSide = parts["read"]
        self._gate = InFlightGate(parts["max_in_flight"])
        # One bound method for every command's callback, not a new one each (a GC object).
        self._settled = self._settle
        self._idempotency: Idempotency = parts["idempotency"]
        self._retention: Retention = parts["retention"]
        self._sagas: Sagas = parts["sagas"]
        self._closed = False
        self._close_lock = threading.Lock()
        self._housekeeper = Housekeeper(
            event_store=self._store,
            view_store=self._view_store,
            registries=self._registries,
            retention=self._retention,
            idle_timeout=parts["idle_timeout"],
        )
        _OPEN_ENGINES.add(self)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "sync",
        max_live_aggregates: int = 100_000,
        idle_timeout: float | None = 600.0,
        snapshot_every: int = 100,
        idempotency_window: IdempotencyWindow = DEFAULT_IDEMPOTENCY_WINDOW,
        deciders: Sequence[Any] | None = None,
        views: Sequence[Any] | None = None,
        view_backends: Mapping[str, Literal["memory", "lmdb"]] | None = None,
        sagas: Sequence[Any] = (),
        projection: Literal["in-process", "process"] = "in-process",
        skip_unknown_events: bool = False,
        workers: int = 1,
        max_batch: int = 2000,
        max_in_flight: int = 20_000,
        map_size: int = 64 * 2**20,
        clock: Callable[[], datetime] | None = None,
        codec: Codec | None = None,
        store_wrapper: Callable[[EventStore], Any] | None = None,
        tune_gc: bool = True,
        switch_interval: float | None = ENGINE_SWITCH_INTERVAL,
        max_view_lag: int | None = None,
        fault_seam: FaultSeam | None = None,
    ) -> Engine:
        """Open (creating if needed) the engine over the data directory ``path``.

        Args:
            path: The data directory; created if missing.
            durability: ``"sync"``: an acknowledged command survives power loss (fsync per group
                commit); ``"async"``: survives a process crash, may lose the last commits on an
                OS crash.
            max_live_aggregates: LRU cap on live aggregate actors.
            idle_timeout: Seconds before an idle aggregate is passivated (None: never).
            snapshot_every: Events per aggregate between snapshots (0: no snapshots).
            idempotency_window: How long a command id is answered with its original result:
                seconds (a number or a ``timedelta``; default 7 days), ``RecentCommands(n)``
                (the n most recent commands), or None (forever). Older rows are pruned in
                small background transactions; a retry after that is a new command.
            deciders: Aggregate types (default: the order domain).
            views: Read models to keep (``views.ReadModel`` shape; default: the order read
                models, ``views.orders.order_read_models()``); ``[]`` for none. Views already
                bound to a backend (``views.View``) are accepted too, mixed with read models.
                Each query is routed to the view whose ``query_types`` hold its type.
            view_backends: Per view name, ``"memory"`` or ``"lmdb"``; a read model not named
                lives where its ``default_backend`` says, else in memory.
            sagas: Process managers (``actors.Saga`` shape: ``name``, ``tags``, pure
                ``react(record) -> commands``): each follows the log from its checkpoint and
                submits its commands with ids derived from the event, so none is applied twice
                (see :mod:`actors._saga`); ``status().sagas`` shows them.
            projection: Where the views are kept. ``"in-process"``: by projector actors of
                this process. ``"process"``: by a projection process of their own (its own
                GIL), which follows the log read-only, writes the views environment and keeps
                the memory views, while this process answers every query (memory views'
                through the pipe), ``after=`` included; it is supervised (restarted with
                backoff if it dies; ``status().projection``) and stopped at close. Its read
                models, the deciders' event types and the codec's upcasters must be importable
                there (a class defined in ``__main__`` is not: such a memory model stays in
                this process, such an LMDB one is refused). See the README for when to pick
                which.
            skip_unknown_events: Let views skip (and count) events they cannot decode.
            workers: Dispatcher worker threads for aggregate actors.
            max_batch: Most commands per group commit.
            max_in_flight: Commands in flight before ``submit`` applies backpressure.
            map_size: Initial LMDB map size in bytes (grows by itself).
            clock: Returns the current UTC time (default: the system clock).
            codec: A codec with extra event types or upcasters registered.
            store_wrapper: Wraps the store used by the write side (a fault-injection seam).
            tune_gc: Raise the cyclic collector's thresholds (process-wide; see
                :func:`tune_collector`) and freeze long-lived actors out of its scans; False
                never touches ``gc`` (thresholds, freeze, unfreeze): the embedding program owns it.
            switch_interval: Lower the interpreter's thread switch interval to this many
                seconds (process-wide, never raising a shorter one; see
                :mod:`actors._switching`): py-lmdb lets go of the GIL per key, and at
                CPython's 5 ms the views fell behind a long write load sooner. None leaves
                it alone.
            max_view_lag: Hold new commands (up to their timeout, as for ``max_in_flight``)
                while the views are more than this many events behind the head (see
                :mod:`actors._lag_bound`); None (the default): writers never wait for views.
                In-process projection only.
            fault_seam: Called with (actor kind, message) before every actor message is handled;
                raising there simulates a crash inside that actor (a test seam; see
                :mod:`actors._supervision`).

        Raises:
            LogLocked: Another live engine holds ``path``; ``.pid`` names it.
            InvalidSaga: ``sagas`` holds something that is not a saga, a name outside the
                grammar, or two sagas with one name (nothing was opened).
            InvalidView: ``views`` holds something that is neither a read model nor a view, two
                views share a name or a query type, or a backend is unknown.
            ProjectionUnavailable: ``projection="process"`` and the projection process did not
                start (nothing was left open).
            UnknownView: ``view_backends`` names no view.
            ValueError: An option is out of range (e.g. a negative ``idempotency_window`` or
                ``switch_interval``, or ``max_view_lag`` below 1 or with another projection).
            TypeError: ``idempotency_window``, ``switch_interval`` or ``max_view_lag`` is of
                another type.
        """
        check_projection(projection)
        window = normalize_window(idempotency_window)
        checked_sagas = check_sagas(sagas)
        check_switch_interval(switch_interval)
        check_max_view_lag(max_view_lag, projection)
        if tune_gc:
            tune_collector()
        if switch_interval is not None:
            tune_switching(switch_interval)
        deciders = list(deciders) if deciders is not None else [ORDERS]
        parts = assemble(
            path,
            deciders=deciders,
            codec=codec,
            durability=durability,
            map_size=map_size,
            views=views,
            view_backends=view_backends,
            projection=projection,
            skip_unknown_events=skip_unknown_events,
            sagas=checked_sagas,
            window=window,
            workers=workers,
            max_batch=max_batch,
            max_live_aggregates=max_live_aggregates,
            snapshot_every=snapshot_every,
            clock=clock,
            store_wrapper=store_wrapper,
            tune_gc=tune_gc,
            fault_seam=fault_seam,
        )
        try:
            engine = cls(_OPEN, max_in_flight=max_in_flight, idle_timeout=idle_timeout, **parts)
        except BaseException:
            take_apart(parts)
            raise
        try:
            if max_view_lag is not None:
                for bound in engine._read.bound_lag(max_view_lag, engine._gate.hold):
                    engine._writer.proxy().subscribe(bound).get(timeout=30)
            # Last: a saga may issue a command at once, through the engine's own door.
            engine._sagas.start(engine._writer, engine.submit)
        except BaseException:
            engine.close()
            raise
        log.info("engine_opened", path=str(path), durability=durability, head=engine.store.head())
        return engine

    def close(self, timeout: float = 30.0) -> None:
        """Drain in-flight commands, stop every actor and close the store (idempotent).

        Nothing acknowledged is lost; commands still in flight are committed before it returns.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._gate.close()  # from here on no command is admitted: the drain below is final
        self._read.release_waiting()  # parked queries are answered now, not after the drain
        if not self._gate.wait_idle(timeout):
            log.warning("close_with_commands_in_flight", in_flight=self._gate.count)
        self._housekeeper.stop(timeout)
        try:
            # Before the write side: a saga mid-step still gets its commands answered (or
            # EngineClosed, and it resumes from its checkpoint at the next open).
            self._sagas.stop(timeout)
            for registry in self._registries:
                registry.stop_all(timeout)
            self._writer.stop(timeout=timeout)
            self._read.close()
        finally:
            # Whatever failed above (a projector stuck in a view's apply), the workers stop and
            # the store is closed: the lock is released and the data directory can be reopened.
            self._dispatcher.shutdown(timeout=timeout)
            self._view_store.close()
            self._store.close()
            log.info("engine_closed")

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

    @property
    def store(self) -> EventStore:
        """The underlying event store (read-only use: events, checkpoints)."""
        return self._store

    # ------------------------------------------------------------ commands

    @guarded
    def submit(self, command: Any, *, timeout: float = 10.0) -> DispatcherFuture[CommandResult]:
        """Send a command without waiting for it; the future resolves once it is committed.

        Blocks only when too many commands are in flight (backpressure), up to ``timeout``.

        Raises:
            EngineClosed: The engine was closed.
            InvalidCommand: Not a command of a registered aggregate type, or malformed ids.
            CommandTimeout: The engine stayed too busy to accept it for ``timeout`` seconds.
        """
        registry, aggregate_id = self._route(command)
        if not self._gate.try_enter() and not self._gate.enter(timeout):
            raise CommandTimeout(command.command_id, timeout, "accepted (engine busy)")
        return self._dispatch(registry, aggregate_id, command)

    def _settle(self, future: DispatcherFuture[CommandResult]) -> None:
        # The one callback of every command's future, a CommandFuture (see there).
        self._gate.leave()
        self._idempotency.settled(cast("CommandFuture[CommandResult]", future).command_id, future)

    def _route(self, command: Any) -> tuple[AggregateRegistry, str]:
        return admit(self._routes, command)

    def _dispatch(
        self, registry: AggregateRegistry, aggregate_id: str, command: Any
    ) -> DispatcherFuture[CommandResult]:
        future: CommandFuture[CommandResult] = CommandFuture(command.command_id)
        future.add_done_callback(self._settled)
        try:
            print_ = fingerprint(command)
        except BaseException:
            self._gate.leave()
            raise
        if not self._idempotency.admit(command.command_id, print_, aggregate_id, future):
            return future  # an id seen before: answered there, never decided twice
        try:
            registry.route(aggregate_id, Execute(command, future, print_))
        except BaseException as error:
            if not future.done():
                future.set_exception((type(error), error, error.__traceback__))
            raise
        return future

    @guarded
    def execute(self, command: Any, *, timeout: float = 10.0) -> CommandResult:
        """Run a command and return once its events are committed.

        Raises:
            CommandRejected: A domain rule is broken (nothing written).
            AggregateNotFound: The aggregate does not exist.
            ConcurrencyConflict: ``expected_version`` did not match.
            IdempotencyConflict: ``command_id`` was used for a different command.
            CommandTimeout: Not acknowledged within ``timeout`` (it may still commit).
            EngineClosed: The engine was closed.
        """
        future = self.submit(command, timeout=timeout)
        try:
            return future.get(timeout=timeout)
        except pykka.Timeout:
            raise CommandTimeout(command.command_id, timeout) from None

    @guarded_async
    async def execute_async(self, command: Any, *, timeout: float = 10.0) -> CommandResult:
        """Like :meth:`execute`, without ever blocking the event loop."""
        registry, aggregate_id = self._route(command)
        if not self._gate.try_enter():
            loop = asyncio.get_running_loop()
            # Backpressure: wait for a slot on a worker thread, not on the loop.
            if not await loop.run_in_executor(None, self._gate.enter, timeout):
                raise CommandTimeout(command.command_id, timeout, "accepted (engine busy)")
        future = self._dispatch(registry, aggregate_id, command)
        try:
            return await asyncio.wait_for(bridge(future), timeout)
        except TimeoutError:
            raise CommandTimeout(command.command_id, timeout) from None

    # ------------------------------------------------------------ queries and views

    @guarded
    def query(self, query: Any, *, after: int | None = None, timeout: float = 5.0) -> Any:
        """Answer a query from the views; with ``after``, first wait for that position.

        Raises:
            InvalidQuery: The query is malformed (no view was touched).
            ConsistencyTimeout: The view did not reach ``after`` in time; ``.stale_result``
                holds the answer as of now.
        """
        return self._read.query(query, after=after, timeout=timeout)

    @guarded_async
    async def query_async(
        self, query: Any, *, after: int | None = None, timeout: float = 5.0
    ) -> Any:
        """Like :meth:`query`, without ever blocking the event loop."""
        return await self._read.query_async(query, after=after, timeout=timeout)

    @guarded
    def rebuild(
        self,
        view: str | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> RebuildReport:
        """Replay the log into fresh copies of the views and swap them in atomically.

        Queries keep being answered from the old copies meanwhile.

        Args:
            view: The view to rebuild (default: all).
            progress: Called with (events done, events total) as the replay advances.
        """
        return self._read.rebuild(view, progress=progress)

    @guarded
    def parked(self, view: str | None = None) -> list[Any]:
        """Return the parked (poison) events, of one view or of all."""
        return self._store.parked(view)

    @guarded
    def retry_parked(self, view: str, position: int) -> bool:
        """Apply a parked event to its view again; True if it applied and was unparked."""
        return self._read.retry_parked(view, position)

    @guarded
    def retry_view(self, view: str) -> None:
        """Restart a view stalled on a corrupt record (or retry a failing one now).

        Its error is cleared and it catches up from its checkpoint at once; a record still
        corrupt stalls it again with the same error (``status().views[view]``).

        Raises:
            UnknownView: No view has that name.
            EngineClosed: The engine was closed.
        """
        self._read.retry_view(view)

    @guarded
    def discard_parked(self, view: str, position: int) -> bool:
        """Forget a parked event (the view stays without it); True if it was parked."""
        return self._store.unpark(view, position)

    @guarded
    def wait_for_views(self, position: int | None = None, timeout: float = 10.0) -> bool:
        """Wait until every view has applied ``position`` (default: the head now)."""
        target = self._store.head() if position is None else position
        return self._read.wait_all(target, timeout)

    @guarded
    def wait_for_sagas(self, timeout: float = 10.0) -> bool:
        """Wait until every saga has reacted to every event committed so far; False on timeout.

        The events its own commands cause included: once it returns True, every flow the sagas
        drive has settled (as of the head when it looked).
        """
        return self._sagas.wait(timeout)

    @guarded
    def backup(self, dest: str | os.PathLike[str]) -> BackupReport:
        """Copy the data directory into ``dest`` while the engine keeps running.

        Consistent: the log as of the moment its copy began (so every command acknowledged
        before this call), the views and memory-view snapshots as of a moment before that (they
        catch up when the backup is opened). Open the backup with ``Engine.open(dest)``; see
        :mod:`store._copy`.

        Raises:
            MaintenanceFailed: ``dest`` exists and is not an empty directory, or a copy failed.
            EngineClosed: The engine was closed.
        """
        return backup_open(self._store, self._view_store, dest)

    @guarded
    def status(self) -> EngineStatus:
        """Return the engine's status: head, views, live aggregates, parked events."""
        head = self._store.head()
        views = self._read.status(head)
        idempotency = self._store.idempotency_stats()
        dictionary = self._store.frames.current
        return EngineStatus(
            head=head,
            views=views,
            sagas=self._sagas.status(head),
            live_aggregates=sum(len(registry) for registry in self._registries),
            parked_events=len(self._store.parked()),
            durability=self._store.durability,
            in_flight=self._gate.count,
            queries_waiting=self._read.queries_waiting,
            file_size=self._store.file_size(),
            views_recovered=self._view_store.recovered,
            projection=None if self._read.remote is None else self._read.remote.status(),
            idempotency_entries=idempotency.entries,
            idempotency_oldest=(
                None if idempotency.oldest is None else idempotency.oldest / 1_000_000_000
            ),
            log_dictionary=0 if dictionary is None else dictionary.dict_id,
        )


# Passed by Engine.open to the constructor: an Engine built any other way is refused.
_OPEN = object()

# Engines still open at interpreter exit are closed (drained, synced) by an atexit hook: with
# daemon threads everywhere nothing else would flush an async-durability store at exit.
_OPEN_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _close_open_engines() -> None:
    for engine in list(_OPEN_ENGINES):
        try:
            engine.close(timeout=10.0)
        except Exception:  # exiting anyway: report it and go on with the others
            log.exception("close_at_exit_failed")
