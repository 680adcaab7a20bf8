"""The log writer actor: one writer, group commit, futures resolved after the commit.

Every aggregate hands its events to this one actor. It drains its inbox into a single LMDB write
transaction (flushing when the inbox is empty or the batch is full), so one fsync covers many
commands, and positions are assigned in commit order by construction (one writer: no gaps).
Callers' futures are resolved only after the commit, so an acknowledged command is durable at the
chosen durability.

The writer runs on its own OS thread (a ``ThreadingActor``): it blocks on fsync, which must never
stall the dispatcher's workers.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import pykka

from actors._idempotency import answer_recorded
from actors._messages import (
    AppendCommand,
    CommandResult,
    HeadAdvanced,
    Reload,
    ReloadNow,
    Resync,
    Teller,
)
from actors._supervision import FaultSeam, Supervised, answer_carried, fail, settle
from domain.errors import ActorFailed, CommitFailed, EngineError
from store import Codec, CommandRecord, Committed, RecordedEvent, StreamAppend, get_logger

if TYPE_CHECKING:
    from actors._tail import EventTail

__all__ = ["LogStore", "LogWriter"]

log = get_logger(__name__)


class LogStore(Protocol):
    """The part of the store the write side uses (a fault-injection wrapper implements it too)."""

    def append_batch(self, appends: Sequence[StreamAppend]) -> list[Committed | EngineError]:
        """Append a batch in one transaction."""
        ...

    def lookup_command(self, command_id: str) -> CommandRecord | None:
        """Return the idempotency record of a command, if any."""
        ...

    def read_stream(
        self, stream_id: str, from_version: int = 1, *, stream_type: str
    ) -> list[RecordedEvent]:
        """Read one stream (keyed by type and id) from a version."""
        ...

    def read_all(
        self, from_position: int = 1, batch_size: int = 1000
    ) -> Iterator[list[RecordedEvent]]:
        """Read the log from a position, in batches."""
        ...

    def head(self) -> int:
        """Return the last position."""
        ...


class LogWriter(Supervised, pykka.ThreadingActor):
    """Group-commits aggregates' appends to the log and resolves their callers' futures.

    Supervision: *resume*. A failure while committing fails that batch's callers (the aggregates
    concerned are told to reload) and the writer goes on with the next batch; at stop, every
    append still queued is answered.

    Args:
        store: The event store (or a fault-injection wrapper around it).
        max_batch: Most commands committed in one transaction.
        tail: Where committed events are handed to the projectors, decoded (None: no views).
        codec: The store's codec (tags and schema versions of the published records).
        fault_seam: Called before each message is handled (tests raise there); None in use.
    """

    use_daemon_thread = True  # a crashed embedding program must not hang on this thread
    actor_kind = "writer"
    policy = "resume"
    redeliver = (Resync,)

    def __init__(
        self,
        store: LogStore,
        *,
        max_batch: int = 2000,
        tail: EventTail | None = None,
        codec: Codec | None = None,
        fault_seam: FaultSeam | None = None,
    ) -> None:
        super().__init__()
        self.fault_seam = fault_seam
        if tail is not None and codec is None:
            raise ValueError("publishing to a tail needs the codec")
        self._store = store
        self._max_batch = max_batch
        self._tail = tail
        self._codec = codec
        # Streams whose commit failed: later appends of the same aggregate were decided on a
        # state that never reached the log, so they fail until the aggregate has resynced.
        # Keyed by (stream type, id): two aggregate types may share an id.
        self._tainted: set[tuple[str, str]] = set()
        self._subscribers: tuple[Teller, ...] = ()
        self.batches = 0
        self.commands = 0

    def subscribe(self, ref: Teller) -> None:
        """Tell ``ref`` a :class:`HeadAdvanced` after every commit (called before traffic)."""
        self._subscribers = (*self._subscribers, ref)

    def _handle_receive(self, message: Any) -> Any:
        try:
            return super()._handle_receive(message)
        except Exception:
            if isinstance(message, AppendCommand):
                # Its aggregate evolved past what the log holds: it must reload before deciding
                # again, or its next append would fail a version check it never asked for.
                self._reload_owners([message])
            raise

    def on_receive(self, message: Any) -> Any:
        """Handle one message; appends pull every queued append into the same commit."""
        if isinstance(message, AppendCommand):
            self._drain_and_commit(message)
        elif isinstance(message, Resync):
            self._tainted.discard((message.stream_type, message.stream_id))
            try:
                message.owner.tell(ReloadNow())
            except pykka.ActorDeadError:
                # The aggregate stopped meanwhile (e.g. close() stopping every actor): its
                # successor loads from the log. Unguarded, this error crashed the writer.
                log.debug("resync_target_gone")
        return None

    def _drain_and_commit(self, first: AppendCommand) -> None:
        batch = [first]
        inbox = cast("queue.Queue[Any]", self.actor_inbox)
        control: Any = None
        while len(batch) < self._max_batch:
            try:
                envelope = inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(envelope.message, AppendCommand):
                batch.append(envelope.message)
            else:
                # Keep arrival order: commit what came before, then handle this one.
                control = envelope
                break
        try:
            self._commit(batch)
        except Exception as error:
            # Only a bug or a failure after the store call gets here (the store call itself is
            # guarded in _commit): the batch may or may not be in the log, so its callers are
            # told exactly that, and a retry with the same command_id learns the outcome.
            log.exception("writer_batch_failed", commands=len(batch))
            failure = ActorFailed("writer", repr(error), outcome_unknown=True)
            for message in batch:
                answer_carried(message, failure)
            self._reload_owners(batch)
        if control is not None:
            self._handle_envelope(control)

    def _handle_envelope(self, envelope: Any) -> None:
        # The same contract as pykka's loop for a message we took out of the inbox ourselves.
        try:
            response = self._handle_receive(envelope.message)
        except Exception as error:  # the asker gets the error, as in pykka's loop
            if envelope.reply_to is not None:
                fail(envelope.reply_to, error)
            else:
                log.exception("writer_message_failed")
        else:
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)

    def _commit(self, batch: list[AppendCommand]) -> None:
        started = time.perf_counter()
        live: list[AppendCommand] = []
        for message in batch:
            if (message.append.stream_type, message.append.stream_id) in self._tainted:
                # Told again: a successor actor (its predecessor crashed before resyncing)
                # never heard the first Reload, and would otherwise fail here for ever. An
                # actor already reloading ignores it.
                self._reload_owners([message])
                fail(
                    message.reply,
                    CommitFailed(
                        "an earlier command of this aggregate failed to commit and this one "
                        "was decided on top of it"
                    ),
                )
            else:
                live.append(message)
        if not live:
            return
        head_before = self._store.head()
        try:
            results = self._store.append_batch([message.append for message in live])
        except Exception as error:  # noqa: BLE001 - every failure is answered, from the log's truth
            self._commit_failed(live, error, head_before)
            return
        head, events = self._settle(live, results)
        tail = self._tail
        if tail is not None and head and tail.readers and tail.wanted(head_before + 1):
            # Before HeadAdvanced: a projector woken by it finds the records already decoded.
            self._publish(live, results)
        self.batches += 1
        self.commands += len(live)
        log.debug(
            "commit",
            commands=len(live),
            events=events,
            head=head,
            ms=round((time.perf_counter() - started) * 1000, 3),
        )
        if head:
            for subscriber in self._subscribers:
                try:
                    subscriber.tell(HeadAdvanced(head))
                except pykka.ActorDeadError:
                    # A dead projector must not take the writer (and every command) down too.
                    log.warning("head_subscriber_gone", subscriber=str(subscriber))

    def _commit_failed(self, live: list[AppendCommand], error: Exception, head_before: int) -> None:
        """Answer a batch whose store call raised: from what the log says actually happened.

        A store call can fail after its transaction committed (a wrapper, a post-commit step):
        "nothing was written" would then be a lie, and a caller trusting it could give up on a
        command that is in the log. The batch is one transaction, so one id tells for all.
        """
        log.error("commit_failed", commands=len(live), exc_info=error)
        # Reload first: a caller that sees the failure may retry at once, and its retry must
        # reach the aggregate after the Reload, not be decided on the uncommitted state.
        self._reload_owners(live)
        try:
            record = self._store.lookup_command(live[0].append.command_id)
        except Exception as lookup_error:  # noqa: BLE001 - the outcome stays unknown, typed
            unknown = ActorFailed("writer", repr(lookup_error), outcome_unknown=True)
            for message in live:
                fail(message.reply, unknown)
            return
        if record is None or record.last_position <= head_before:
            failure = CommitFailed(repr(error))
            for message in live:
                fail(message.reply, failure)
            return
        log.warning("commit_failed_after_commit", commands=len(live), error=repr(error))
        for message in live:
            self._answer_from_log(message.append.command_id, message, duplicate=False)
        for subscriber in self._subscribers:
            with contextlib.suppress(pykka.ActorDeadError):
                subscriber.tell(HeadAdvanced(self._store.head()))

    def _settle(
        self, live: list[AppendCommand], results: list[Committed | EngineError]
    ) -> tuple[int, int]:
        """Resolve every caller's future; return (new head, events committed)."""
        head = 0
        events = 0
        # The aggregate decided on a state the log does not have (a racing duplicate id or a
        # stale version): it must reload, and it is told so before its callers learn anything,
        # so that a caller's immediate retry reaches it after the Reload.
        self._reload_owners(
            [
                message
                for message, result in zip(live, results, strict=True)
                if not isinstance(result, Committed) or result.duplicate
            ]
        )
        for message, result in zip(live, results, strict=True):
            if isinstance(result, Committed) and not result.duplicate:
                head = max(head, result.last_position)
                events += len(message.append.events)
                settle(
                    message.reply,
                    CommandResult(
                        aggregate_id=message.aggregate_id,
                        version=result.version,
                        position=result.last_position,
                        events=tuple(message.append.events),
                    ),
                )
            elif isinstance(result, Committed):
                self._answer_from_log(message.append.command_id, message)
            else:
                fail(message.reply, result)
        return head, events

    def _publish(self, live: list[AppendCommand], results: list[Committed | EngineError]) -> None:
        tail, codec = self._tail, self._codec
        if tail is None or codec is None:  # pragma: no cover - checked by the caller
            return
        tag_of = codec.tag_of
        records: list[RecordedEvent] = []
        for message, result in zip(live, results, strict=True):
            if not isinstance(result, Committed) or result.duplicate:
                continue
            append = message.append
            if not append.timestamp:
                return  # the store stamped it: only the log knows it; readers decode from there
            first_version = result.version - len(append.events) + 1
            for offset, event in enumerate(append.events):
                tag, schema = tag_of(event)
                records.append(
                    RecordedEvent(
                        result.first_position + offset,
                        append.stream_id,
                        append.stream_type,
                        first_version + offset,
                        tag,
                        schema,
                        append.timestamp,
                        append.command_id,
                        event,
                    )
                )
        try:
            tail.publish(records)
        except Exception:  # the projectors then decode from LMDB: slower, never wrong
            log.exception("tail_publish_failed")

    def _answer_from_log(
        self, command_id: str, message: AppendCommand, *, duplicate: bool = True
    ) -> None:
        if duplicate:
            # The engine's door answers every command id seen before, so the store meeting one
            # here means something bypassed it: answer with the door's own code, and say so.
            log.warning("duplicate_reached_the_writer", command_id=command_id)
        try:
            record = self._store.lookup_command(command_id)
        except Exception as error:  # noqa: BLE001 - typed for the caller
            fail(message.reply, ActorFailed("writer", repr(error), outcome_unknown=True))
            return
        if record is None:  # pragma: no cover - the store just reported it as recorded
            fail(message.reply, CommitFailed("duplicate command vanished from the log"))
            return
        answer_recorded(
            self._store,
            record,
            message.append.fingerprint,
            message.aggregate_id,
            message.reply,
        )

    def _reload_owners(self, messages: list[AppendCommand]) -> None:
        owners: dict[tuple[str, str], pykka.ActorRef[Any]] = {}
        for message in messages:
            stream = (message.append.stream_type, message.append.stream_id)
            self._tainted.add(stream)
            owners[stream] = message.owner
        for owner in owners.values():
            try:
                owner.tell(Reload())
            except pykka.ActorDeadError:
                # The aggregate was already stopped: its successor loads from the log anyway,
                # so nothing decided on the failed state can follow.
                log.debug("reload_target_gone")
        for stream, owner in owners.items():
            if not owner.is_alive():
                self._tainted.discard(stream)
