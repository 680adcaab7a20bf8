"""The store's plain data records: what callers hand in and what they get back.

They are msgspec Structs so they cost little to build and cross threads and processes as plain
data. None of them knows about LMDB; the byte layouts live in the modules that store them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

__all__ = [
    "CommandRecord",
    "Committed",
    "Durability",
    "ParkedEvent",
    "ReadBatch",
    "RecordedEvent",
    "Snapshot",
    "StreamAppend",
]

Durability = Literal["sync", "async"]
"""``"sync"``: an acknowledged commit survives power loss (fsync per commit); ``"async"``: it
survives a crash of the process, the last commits may be lost if the OS crashes."""


class StreamAppend(msgspec.Struct, kw_only=True, gc=False):
    """One command's events for one stream, appended atomically with an expected-version check.

    Untracked by the cyclic collector (``gc=False``): one per command in flight, and what it
    holds (ids, events, bytes) never refers back to it.

    Attributes:
        stream_id: The stream (aggregate id); UTF-8, no NUL.
        stream_type: The aggregate type, stored with every event (e.g. ``"order"``); UTF-8,
            no NUL. A stream is keyed by type and id: together at most 501 bytes.
        expected_version: Stream head version the caller assumes *before* these events.
        events: Domain events: tagged Structs registered in the store's :class:`Codec`.
        command_id: Idempotency key; ``""`` records nothing.
        fingerprint: Hash of the command; compared when ``command_id`` is seen again.
        timestamp: Nanoseconds since the epoch (UTC) stored in every envelope; ``0`` = now.
        snapshot: Encoded state *after* these events, written in the same transaction.
        snapshot_schema: Schema version of ``snapshot``.
    """

    stream_id: str
    stream_type: str
    expected_version: int
    events: Sequence[msgspec.Struct]
    command_id: str = ""
    fingerprint: bytes = b""
    timestamp: int = 0
    snapshot: bytes | None = None
    snapshot_schema: int = 1


class Committed(msgspec.Struct, frozen=True):
    """The outcome of one successful :class:`StreamAppend`.

    Attributes:
        stream_id: The stream appended to.
        version: Stream version after the append.
        first_position: Global position of the first event of the append.
        last_position: Global position of the last event of the append. An append without
            events commits nothing to the log and reports ``0`` for both positions.
        duplicate: True when ``command_id`` was already recorded with the same fingerprint:
            nothing was appended and the figures are the original ones.
    """

    stream_id: str
    version: int
    first_position: int
    last_position: int
    duplicate: bool = False


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """A domain event as stored in the log, with its envelope.

    Reads return instances of a private ``array_like`` subclass (decoding straight into it is
    what makes scans fast); attribute access is identical. To serialise one, use
    :meth:`as_dict` rather than encoding the instance itself (it would encode as an array).

    Attributes:
        position: Global position (1, 2, 3... without gaps).
        stream_id: The stream (aggregate id).
        stream_type: The aggregate type.
        version: The event's version within its stream (1, 2, 3... without gaps).
        tag: The event type's stable tag.
        schema_version: Schema version the event was *written* with (before upcasting).
        timestamp: Nanoseconds since the epoch, UTC.
        command_id: The command that caused the event (``""`` if none).
        event: The decoded (and upcast) domain event.
    """

    position: int
    stream_id: str
    stream_type: str
    version: int
    tag: str
    schema_version: int
    timestamp: int
    command_id: str
    event: msgspec.Struct

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a dict (``event`` stays a Struct), ready for JSON encoding."""
        return {field: getattr(self, field) for field in self.__struct_fields__}


class CommandRecord(msgspec.Struct, frozen=True):
    """A row of the idempotency table: what a command id committed.

    Attributes:
        command_id: The command's id.
        fingerprint: The command's fingerprint as given at append time.
        stream_id: The stream it appended to.
        version: The stream version after it.
        first_position: Position of its first event (0 if it had none).
        last_position: Position of its last event (0 if it had none).
    """

    command_id: str
    fingerprint: bytes
    stream_id: str
    version: int
    first_position: int
    last_position: int


class Snapshot(msgspec.Struct, frozen=True):
    """The latest saved state of a stream.

    Attributes:
        stream_id: The stream (aggregate id).
        stream_type: The aggregate type (a stream is keyed by type and id).
        version: Stream version the state reflects.
        schema_version: Schema version of ``state``; readers ignore versions they do not know.
        state: The encoded state.
    """

    stream_id: str
    stream_type: str
    version: int
    schema_version: int
    state: bytes


class ParkedEvent(msgspec.Struct, frozen=True):
    """A poison event a view gave up on, kept with its error.

    Attributes:
        view: The view that failed to apply it.
        position: The event's global position.
        error: What went wrong (the exception's text).
        attempts: How many times the view tried.
        parked_at: When it was parked, nanoseconds since the epoch (UTC).
    """

    view: str
    position: int
    error: str
    attempts: int
    parked_at: int


class ReadBatch(list[RecordedEvent]):
    """A batch of a scan that asked for some tags only (``read_all(..., tags=...)``).

    Its records are those of the tags asked for, in order; ``end`` is the last position the
    batch read, which records of other tags may follow.
    """

    __slots__ = ("end",)

    def __init__(self, records: list[RecordedEvent], end: int) -> None:
        super().__init__(records)
        self.end = end
