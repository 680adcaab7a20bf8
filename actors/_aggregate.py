"""The generic aggregate actor: one per live aggregate, running a Decider's pure functions.

It loads the latest snapshot plus the tail of its stream, then handles its commands one at a
time: idempotency and version checks, ``decide``, ``evolve``, and hands the events to the log
writer together with the caller's future. It goes on with its next command before the commit
lands (pipelining); if a commit fails, the writer tells it to :class:`Reload`, and it stashes new
commands until everything it sent earlier has settled, then reloads from the log.

It never blocks on another actor: a blocked worker would stall every aggregate on the dispatcher.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import pykka

from actors._dispatch import DispatcherActor
from actors._messages import (
    AppendCommand,
    Execute,
    Passivate,
    Reload,
    ReloadNow,
    Resync,
)
from actors._writer import LogStore, fail, result_from_record
from domain.errors import (
    ConcurrencyConflict,
    EngineError,
    IdempotencyConflict,
    StorageError,
)
from store import Snapshot, StreamAppend, get_logger

if TYPE_CHECKING:
    from actors._registry import AggregateRegistry
    from domain.decider import Decider

__all__ = ["AggregateActor", "AggregateKit", "SnapshotStore", "as_engine_error", "utc_now"]

log = get_logger(__name__)

_encoder = msgspec.msgpack.Encoder(decimal_format="string")


def as_engine_error(error: BaseException, operation: str) -> EngineError:
    """Return ``error`` if it is an EngineError, else a :class:`StorageError` wrapping it."""
    if isinstance(error, EngineError):
        return error
    return StorageError(operation, repr(error))


class SnapshotStore(LogStore, Protocol):
    """The part of the store an aggregate uses to load itself."""

    def load_snapshot(self, stream_id: str, *, stream_type: str) -> Snapshot | None:
        """Return the latest snapshot of a stream."""
        ...

    def stream_version(self, stream_id: str, *, stream_type: str) -> int:
        """Return the committed version of a stream."""
        ...


class AggregateKit:
    """What every live actor of one aggregate type shares.

    One object referenced by each actor instead of six attributes in each actor's ``__dict__``:
    at 100k live aggregates that is megabytes.

    Args:
        decider: The pure write model.
        store: The event store (reads: snapshots, stream tail, idempotency records).
        writer: The log writer actor.
        registry: The registry that activates the actors (passivation removes them there).
        snapshot_every: Events between snapshots (0 disables snapshots).
        clock: Returns the current UTC time; passed to ``decide``.
    """

    __slots__ = ("clock", "decider", "registry", "snapshot_every", "store", "writer")

    def __init__(
        self,
        *,
        decider: Decider[Any, Any, Any],
        store: SnapshotStore,
        writer: pykka.ActorRef[Any],
        registry: AggregateRegistry,
        snapshot_every: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.decider = decider
        self.store = store
        self.writer = writer
        self.registry = registry
        self.snapshot_every = snapshot_every
        self.clock = clock


class AggregateActor(DispatcherActor):
    """One live aggregate on the dispatcher.

    Args:
        aggregate_id: The aggregate's id (also its stream id).
        kit: What it shares with the other actors of its type (decider, store, writer...).
    """

    def __init__(self, *, aggregate_id: str, kit: AggregateKit) -> None:
        super().__init__()
        self.aggregate_id = aggregate_id
        self._kit = kit
        self._state: Any = kit.decider.initial()
        self._version = 0
        self._stash: deque[Execute] | None = None  # not None while waiting to reload
        # Why the last load failed (None: loaded). An exception escaping on_start or a reload
        # used to stop the actor while it stayed in the registry: the commands in its inbox or
        # stash were dropped and their callers hung until their timeout (and close() waited for
        # them). Now each command retries the load and fails with its error if it fails again.
        self._load_error: Exception | None = None

    def on_start(self) -> None:
        """Load the latest snapshot and the tail of the stream."""
        self._try_load()

    def on_stop(self) -> None:
        """Drop the state early: a stopped actor may linger in a frozen GC generation."""
        self._state = None

    def on_receive(self, message: Any) -> Any:
        """Handle engine, writer and registry messages; never raises for a command."""
        if isinstance(message, Execute):
            if self._stash is not None:
                self._stash.append(message)
            else:
                self._execute(message)
        elif isinstance(message, Reload):
            self._begin_reload()
        elif isinstance(message, ReloadNow):
            self._finish_reload()
        elif isinstance(message, Passivate):
            return self._passivate()
        return None

    # ------------------------------------------------------------ loading

    def _load(self) -> None:
        decider = self._kit.decider
        state = decider.initial()
        version = 0
        snapshot = self._kit.store.load_snapshot(self.aggregate_id, stream_type=decider.stream_type)
        if snapshot is not None and snapshot.schema_version == decider.state_schema_version:
            try:
                state = msgspec.msgpack.decode(snapshot.state, type=decider.state_type)
                version = snapshot.version
            except msgspec.DecodeError:
                # A snapshot is only a cache of the log: replay everything instead.
                log.warning("snapshot_unreadable", aggregate_id=self.aggregate_id)
        stream = self._kit.store.read_stream(
            self.aggregate_id, version + 1, stream_type=decider.stream_type
        )
        for recorded in stream:
            state = decider.evolve(state, recorded.event)
            version = recorded.version
        self._state = state
        self._version = version

    def _try_load(self) -> bool:
        try:
            self._load()
        except Exception as error:  # a read failure must not kill the actor: see _load_error
            log.exception("aggregate_load_failed", aggregate_id=self.aggregate_id)
            self._load_error = error
            return False
        self._load_error = None
        return True

    def _begin_reload(self) -> None:
        if self._stash is None:
            self._stash = deque()
            # The writer answers after everything this actor sent before; only then is the log
            # the whole truth about this aggregate.
            kind = self._kit.decider.stream_type
            self._kit.writer.tell(Resync(self.aggregate_id, self.actor_ref, kind))

    def _finish_reload(self) -> None:
        self._try_load()  # on failure each stashed command retries the load (see _execute)
        stash, self._stash = self._stash, None
        while stash:
            again = self._pending()
            if again is not None:  # a stashed command triggered another reload
                again.extend(stash)
                return
            self._execute(stash.popleft())

    def _pending(self) -> deque[Execute] | None:
        return self._stash

    # ------------------------------------------------------------ commands

    def _execute(self, message: Execute) -> None:
        command, reply = message.command, message.reply
        if self._load_error is not None and not self._try_load():
            fail(reply, as_engine_error(self._load_error, "load"))
            return
        try:
            print_ = message.fingerprint
            try:
                if self._answer_duplicate(command.command_id, print_, reply):
                    return
            except EngineError:
                raise
            except Exception as error:
                # A store read failure is the caller's to retry, typed like every other answer.
                log.exception("idempotency_lookup_failed", aggregate_id=self.aggregate_id)
                raise as_engine_error(error, "idempotency lookup") from error
            self._check_version(command.expected_version)
            now = self._kit.clock()
            events = tuple(self._kit.decider.decide(self._state, command, now))
        except EngineError as error:
            fail(reply, error)
            return
        except Exception as error:  # a bug in decide fails this command only
            log.exception("decide_failed", aggregate_id=self.aggregate_id)
            fail(reply, error)
            return
        try:
            state = self._state
            for event in events:
                state = self._kit.decider.evolve(state, event)
        except Exception as error:  # a bug in evolve fails this command only
            log.exception("evolve_failed", aggregate_id=self.aggregate_id)
            fail(reply, error)
            self._begin_reload()  # our state may be half-evolved: rebuild it from the log
            return
        before = self._version
        version = before + len(events)
        snapshot = None
        every = self._kit.snapshot_every
        if every and events and version // every != before // every:
            snapshot = self._encode_snapshot(state)
        append = StreamAppend(
            stream_id=self.aggregate_id,
            stream_type=self._kit.decider.stream_type,
            expected_version=before,
            events=events,
            command_id=command.command_id,
            fingerprint=print_,
            timestamp=int(now.timestamp() * 1_000_000) * 1000,
            snapshot=snapshot,
            snapshot_schema=self._kit.decider.state_schema_version,
        )
        self._kit.writer.tell(AppendCommand(append, self.aggregate_id, reply, self.actor_ref))
        self._state = state
        self._version = version

    def _encode_snapshot(self, state: Any) -> bytes | None:
        # A snapshot is only a cache: a state msgpack cannot hold (e.g. an int beyond 64 bits)
        # skips it. Unguarded, the error escaped on_receive, killed the actor and left its
        # caller's future (and every command queued behind it) unresolved until timeout.
        try:
            return _encoder.encode(state)
        except (msgspec.EncodeError, OverflowError, TypeError, ValueError):
            log.warning("snapshot_unencodable", aggregate_id=self.aggregate_id)
            return None

    def _check_version(self, expected: int | None) -> None:
        if expected is not None and expected != self._version:
            raise ConcurrencyConflict(self.aggregate_id, expected, self._version)

    def _answer_duplicate(self, command_id: str, print_: bytes, reply: pykka.Future[Any]) -> bool:
        # Duplicates of a command still in flight are answered at the engine's door; here only
        # settled ones can arrive, and the log knows them.
        record = self._kit.store.lookup_command(command_id)
        if record is None:
            return False
        if record.fingerprint != print_:
            raise IdempotencyConflict(command_id)
        stream_type = self._kit.decider.stream_type
        reply.set(result_from_record(self._kit.store, record, self.aggregate_id, stream_type))
        return True

    # ------------------------------------------------------------ passivation

    def _passivate(self) -> bool:
        """Stop if nothing of ours is in flight; return whether we stopped."""
        if self._load_error is not None and self._stash is None:
            # nothing loaded since the failure, so nothing of ours can be in flight
            return self._kit.registry.retire(self)
        kind = self._kit.decider.stream_type
        busy = self._stash is not None or (
            # appends still in flight: their outcome may need this actor
            self._kit.store.stream_version(self.aggregate_id, stream_type=kind) != self._version
        )
        if busy:
            self._kit.registry.refused(self.aggregate_id)
            return False
        return self._kit.registry.retire(self)


def utc_now() -> datetime:
    """Return the current UTC time (the engine's default clock)."""
    return datetime.fromtimestamp(time.time(), UTC)
