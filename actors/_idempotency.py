"""Idempotency at the engine's door: the one place that answers a command id seen before.

A command id is either new (the command goes on to its aggregate and is decided), in flight (the
duplicate gets the original's answer when it settles), or recorded in the log (the duplicate gets
the original result rebuilt from the log). The door checks in that order, in the caller's thread,
before anything reaches an actor:

* a duplicate is registered as in flight *before* the log is read, and an entry leaves the
  in-flight table only after its future settles, which is after the commit: so a command that is
  not in flight and not in the log when it is admitted has never been committed, and no second
  copy of it can be decided behind it;
* aggregates therefore only ever decide new commands, and the log writer never meets a duplicate
  (the store's own check stays as the last line of defence: see :func:`answer_recorded`).

Before, four places could answer a retry depending on timing (the door, the aggregate's lookup,
the writer's duplicate path, and a racing copy), each with its own failure modes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Protocol

import pykka

from actors._future import DispatcherFuture
from actors._messages import CommandResult
from actors._supervision import as_engine_error, fail, settle
from domain.errors import CommitFailed, IdempotencyConflict
from store import CommandRecord, RecordedEvent, get_logger

__all__ = ["Idempotency", "RecordReader", "answer_recorded", "result_from_record"]

log = get_logger(__name__)


class RecordReader(Protocol):
    """The store reads that answer a recorded command (a fault-injection wrapper has them too)."""

    def lookup_command(self, command_id: str) -> CommandRecord | None:
        """Return the idempotency record of a command, if any."""
        ...

    def read_all(
        self, from_position: int = 1, batch_size: int = 1000
    ) -> Iterator[list[RecordedEvent]]:
        """Read the log from a position, in batches."""
        ...


def result_from_record(
    store: RecordReader, record: CommandRecord, aggregate_id: str
) -> CommandResult:
    """Rebuild the original :class:`CommandResult` of an already committed command.

    A command's events sit at consecutive positions, so exactly those records are read: not the
    stream's tail after them (long for an old command, and a damaged record there must not make
    a retry of an intact command fail).
    """
    if record.first_position == 0:
        # A command that appended no events (a decider may answer "nothing to do"): its
        # result is its version alone. Reading the log here used to fail the retry.
        return CommandResult(
            aggregate_id=aggregate_id, version=record.version, position=0, events=()
        )
    count = record.last_position - record.first_position + 1
    batch = next(iter(store.read_all(record.first_position, count)), [])
    events = tuple(
        recorded.event
        for recorded in batch
        if record.first_position <= recorded.position <= record.last_position
    )
    if len(events) != count:  # pragma: no cover - the record and the log are one transaction
        raise CommitFailed(f"command {record.command_id}: its recorded events are missing")
    return CommandResult(
        aggregate_id=aggregate_id,
        version=record.version,
        position=record.last_position,
        events=events,
    )


def answer_recorded(
    store: RecordReader,
    record: CommandRecord,
    fingerprint: bytes,
    aggregate_id: str,
    reply: pykka.Future[CommandResult],
) -> None:
    """Answer ``reply`` for a command whose id the log already holds.

    Same fingerprint: the original result. Another command under that id:
    :class:`IdempotencyConflict`. A read failure: a typed StorageError (retrying is safe).
    """
    if record.fingerprint != fingerprint:
        fail(reply, IdempotencyConflict(record.command_id))
        return
    try:
        result = result_from_record(store, record, aggregate_id)
    except Exception as error:  # noqa: BLE001 - the caller gets it typed; a retry is safe
        fail(reply, as_engine_error(error, "reading a recorded command's result"))
        return
    settle(reply, result)


class Idempotency:
    """The commands in flight by id (engine-wide), and the log's record of settled ones.

    An in-flight entry lives exactly from submit to settle, so it costs no memory in the
    aggregates (a per-aggregate memory of recent ids cost ~0.7-2 KiB per live aggregate). The
    caller ends it: it calls :meth:`settled` when the future it admitted resolves (the engine
    does so from the one callback it gives every command's future: a callback per component
    would be objects per command in flight for the cyclic collector to walk).

    Args:
        store: Where committed command ids are looked up (the write side's store, so a
            fault-injection wrapper sees these reads too).
    """

    def __init__(self, store: RecordReader) -> None:
        self._store = store
        self._lock = threading.Lock()
        # Two dicts, not one of (fingerprint, future) pairs: no tuple per command in flight.
        self._futures: dict[str, DispatcherFuture[Any]] = {}
        self._fingerprints: dict[str, bytes] = {}

    def __len__(self) -> int:
        """Return how many commands are in flight."""
        return len(self._futures)

    def admit(
        self,
        command_id: str,
        fingerprint: bytes,
        aggregate_id: str,
        future: DispatcherFuture[CommandResult],
    ) -> bool:
        """Return True if the command is new: the caller then sends it to its aggregate.

        Otherwise ``future`` is answered here (now, or when the original settles): with the
        original's result, :class:`IdempotencyConflict` for a different command under the same
        id, or a typed StorageError if the log could not be read. Either way the caller calls
        :meth:`settled` with ``command_id`` and ``future`` once ``future`` resolves.
        """
        with self._lock:
            original = self._futures.get(command_id)
            if original is None:
                self._futures[command_id] = future
                self._fingerprints[command_id] = fingerprint
            else:
                original_print = self._fingerprints[command_id]
        if original is not None:
            if original_print != fingerprint:
                fail(future, IdempotencyConflict(command_id))
            else:
                original.add_done_callback(lambda done: _copy(done, future))
            return False
        try:
            record = self._store.lookup_command(command_id)
        except Exception as error:  # noqa: BLE001 - typed for the caller, who may retry
            log.warning("idempotency_lookup_failed", command_id=command_id, error=repr(error))
            fail(future, as_engine_error(error, "idempotency lookup"))
            return False
        if record is None:
            return True
        answer_recorded(self._store, record, fingerprint, aggregate_id, future)
        return False

    def settled(self, command_id: str, future: DispatcherFuture[Any]) -> None:
        """End the in-flight entry of ``command_id`` if ``future`` is the one it admitted."""
        with self._lock:
            if self._futures.get(command_id) is future:
                del self._futures[command_id]
                del self._fingerprints[command_id]


def _copy(source: DispatcherFuture[Any], target: DispatcherFuture[Any]) -> None:
    # Runs when the original settles: the duplicate gets the very same answer.
    try:
        value = source.get(timeout=0)
    except Exception as error:  # noqa: BLE001 - the original's failure is the duplicate's too
        fail(target, error)
    else:
        settle(target, value)
