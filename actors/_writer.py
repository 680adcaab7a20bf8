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

import queue
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import pykka

from actors._messages import (
    AppendCommand,
    CommandResult,
    HeadAdvanced,
    Reload,
    ReloadNow,
    Resync,
)
from domain.errors import CommitFailed, EngineError
from store import Codec, CommandRecord, Committed, RecordedEvent, StreamAppend, get_logger

if TYPE_CHECKING:
    from actors._tail import EventTail

__all__ = ["LogStore", "LogWriter", "fail", "result_from_record"]

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

    def head(self) -> int:
        """Return the last position."""
        ...


def fail(reply: pykka.Future[Any], error: BaseException) -> None:
    """Resolve ``reply`` with ``error`` (ignoring a future that is already resolved)."""
    try:
        reply.set_exception((type(error), error, error.__traceback__))
    except queue.Full:  # pragma: no cover - a future is resolved exactly once by design
        log.warning("future_already_resolved", error=repr(error))


def result_from_record(
    store: LogStore, record: CommandRecord, aggregate_id: str, stream_type: str
) -> CommandResult:
    """Rebuild the original :class:`CommandResult` of an already committed command."""
    count = record.last_position - record.first_position + 1
    first_version = record.version - count + 1
    stream = store.read_stream(record.stream_id, first_version, stream_type=stream_type)
    events = tuple(
        recorded.event
        for recorded in stream[:count]
        if record.first_position <= recorded.position <= record.last_position
    )
    return CommandResult(
        aggregate_id=aggregate_id,
        version=record.version,
        position=record.last_position,
        events=events,
    )


class LogWriter(pykka.ThreadingActor):
    """Group-commits aggregates' appends to the log and resolves their callers' futures.

    Args:
        store: The event store (or a fault-injection wrapper around it).
        max_batch: Most commands committed in one transaction.
        tail: Where committed events are handed to the projectors, decoded (None: no views).
        codec: The store's codec (tags and schema versions of the published records).
    """

    use_daemon_thread = True  # a crashed embedding program must not hang on this thread

    def __init__(
        self,
        store: LogStore,
        *,
        max_batch: int = 2000,
        tail: EventTail | None = None,
        codec: Codec | None = None,
    ) -> None:
        super().__init__()
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
        self._subscribers: tuple[pykka.ActorRef[Any], ...] = ()
        self.batches = 0
        self.commands = 0

    def subscribe(self, ref: pykka.ActorRef[Any]) -> None:
        """Tell ``ref`` a :class:`HeadAdvanced` after every commit (called before traffic)."""
        self._subscribers = (*self._subscribers, ref)

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
        self._commit(batch)
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
        try:
            results = self._store.append_batch([message.append for message in live])
        except Exception as error:
            log.exception("commit_failed", commands=len(live))
            # Reload first: a caller that sees the failure may retry at once, and its retry must
            # reach the aggregate after the Reload, not be decided on the uncommitted state.
            self._reload_owners(live)
            failure = CommitFailed(repr(error))
            for message in live:
                fail(message.reply, failure)
            return
        head, events = self._settle(live, results)
        if self._tail is not None and head:
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
                message.reply.set(
                    CommandResult(
                        aggregate_id=message.aggregate_id,
                        version=result.version,
                        position=result.last_position,
                        events=tuple(message.append.events),
                    )
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

    def _answer_from_log(self, command_id: str, message: AppendCommand) -> None:
        record = self._store.lookup_command(command_id)
        if record is None:  # pragma: no cover - the store just reported it as recorded
            fail(message.reply, CommitFailed("duplicate command vanished from the log"))
            return
        kind = message.append.stream_type
        message.reply.set(result_from_record(self._store, record, message.aggregate_id, kind))

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
