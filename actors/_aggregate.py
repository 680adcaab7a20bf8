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
from actors._mail import tell
from actors._messages import (
    AppendCommand,
    Execute,
    Passivate,
    Reload,
    ReloadNow,
    Resync,
)
from actors._supervision import FaultSeam, Supervised, as_engine_error, fail, settle
from actors._writer import LogStore
from domain.errors import ConcurrencyConflict, EngineError
from store import Snapshot, StreamAppend, get_logger

if TYPE_CHECKING:
    from actors._registry import AggregateRegistry
    from domain.decider import Decider

__all__ = ["AggregateActor", "AggregateKit", "SnapshotStore", "as_engine_error", "utc_now"]

log = get_logger(__name__)

_encoder = msgspec.msgpack.Encoder(decimal_format="string")


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
        fault_seam: Called before each message is handled (tests raise there); None in use.
    """

    __slots__ = ("clock", "decider", "fault_seam", "registry", "snapshot_every", "store", "writer")

    def __init__(
        self,
        *,
        decider: Decider[Any, Any, Any],
        store: SnapshotStore,
        writer: pykka.ActorRef[Any],
        registry: AggregateRegistry,
        snapshot_every: int,
        clock: Callable[[], datetime],
        fault_seam: FaultSeam | None = None,
    ) -> None:
        self.decider = decider
        self.store = store
        self.writer = writer
        self.registry = registry
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.fault_seam = fault_seam


class AggregateActor(Supervised, DispatcherActor):
    """One live aggregate on the dispatcher.

    Supervision: *restart on demand*. A failure inside a handler fails only the command being
    handled; the registry then retires the actor and hands its queued commands to a successor
    (see :meth:`AggregateRegistry.crashed`).

    Args:
        aggregate_id: The aggregate's id (also its stream id).
        kit: What it shares with the other actors of its type (decider, store, writer...).
        resync: Resync with the writer before loading (a successor of a failed actor: appends of
            its predecessor may still be in flight, and loading before they settle would decide
            on a stale version).
    """

    actor_kind = "aggregate"

    def __init__(self, *, aggregate_id: str, kit: AggregateKit, resync: bool = False) -> None:
        super().__init__()
        self.aggregate_id = aggregate_id
        self._kit = kit
        self._state: Any = kit.decider.initial()
        self._version = 0
        # Not None while waiting to reload: commands wait here until the log is the whole truth.
        self._stash: deque[Execute] | None = deque() if resync else None
        # Why the last load failed (None: loaded). An exception escaping on_start or a reload
        # used to stop the actor while it stayed in the registry: the commands in its inbox or
        # stash were dropped and their callers hung until their timeout (and close() waited for
        # them). Now each command retries the load and fails with its error if it fails again.
        self._load_error: Exception | None = None

    def on_start(self) -> None:
        """Load the latest snapshot and the tail of the stream (after a resync if asked)."""
        if self._stash is not None:
            self._kit.writer.tell(
                Resync(self.aggregate_id, self.actor_ref, self._kit.decider.stream_type)
            )
        else:
            self._try_load()

    def on_stop(self) -> None:
        """Drop the state early: a stopped actor may linger in a frozen GC generation."""
        self._state = None

    def on_failure(self, *exc_info: object) -> None:
        """Restart on demand: hand every queued command to a fresh actor (see the class doc)."""
        del exc_info  # logged by pykka's failure handling
        self._state = None
        self._kit.registry.crashed(self)

    def take_queued(self) -> list[Execute]:
        """Remove and return the commands waiting here (stash first: they arrived earlier)."""
        queued = list(self._stash or ())
        self._stash = None
        inbox = self.actor_inbox
        while not inbox.empty():
            envelope = inbox.get()
            if isinstance(envelope.message, Execute):
                queued.append(envelope.message)
            elif envelope.reply_to is not None:
                settle(envelope.reply_to, None)  # an ask (a stop, a test's probe): it is over
        return queued

    def _fault_seam(self) -> FaultSeam | None:
        return self._kit.fault_seam

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
        # A command id seen before never gets here: the engine's door answers it
        # (actors/_idempotency.py), so this is the only place that decides.
        print_ = message.fingerprint
        try:
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
        tell(self._kit.writer, AppendCommand(append, self.aggregate_id, reply, self.actor_ref))
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

    # ------------------------------------------------------------ passivation

    def _passivate(self) -> bool:
        """Stop if nothing of ours is in flight; return whether we stopped."""
        if self._load_error is not None and self._stash is None:
            # nothing loaded since the failure, so nothing of ours can be in flight
            return self._kit.registry.retire(self)
        kind = self._kit.decider.stream_type
        try:
            # Appends still in flight: their outcome may need this actor.
            busy = self._stash is not None or (
                self._kit.store.stream_version(self.aggregate_id, stream_type=kind) != self._version
            )
        except Exception:
            log.warning("passivation_check_failed", aggregate_id=self.aggregate_id, exc_info=True)
            busy = True
        if busy:
            self._kit.registry.refused(self.aggregate_id)
            return False
        return self._kit.registry.retire(self)


def utc_now() -> datetime:
    """Return the current UTC time (the engine's default clock)."""
    return datetime.fromtimestamp(time.time(), UTC)
