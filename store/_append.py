"""One append batch inside the log's write transaction: validate, encode, then write in bulk.

:func:`append_in_txn` is what ``EventStore.append_batch`` runs in its write transaction: it
reads every stream head and known command id the batch needs in one ``getmulti`` per table,
checks and encodes each append on its own (a failing append fails alone, before anything is
put), and writes the log, the stream index, the heads, the idempotency rows and inline
snapshots in one bulk put per table. The tables are described in :mod:`store._log`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from domain.errors import (
    CommitFailed,
    ConcurrencyConflict,
    EngineError,
    IdempotencyConflict,
    InvalidCommand,
)
from store._codec import Codec
from store._commands import command_id_of, command_key, decode_command, encode_command
from store._heads import HeadsCache
from store._log import MAX_STREAM_VERSION, last_command_key, stream_key
from store._log import checked_command_key as _command_key
from store._records import CommandRecord, Committed, StreamAppend
from store._snapshots import encode_snapshot

if TYPE_CHECKING:
    from store._env import Database, Txn
    from store._frames import LogFrames

__all__ = ["append_in_txn"]

# Moved out of store._log as it was: the batch (its state, checks and flush) is one concept and
# made up nearly half of that module; the log's keys, reads and lookups stay there.


class _Batch:
    """The state of one append batch while its transaction is open.

    Keys and values are kept in parallel lists, never as (key, value) pairs: a pair is a tuple
    the cyclic collector tracks, and a batch of 2,000 commands made ~7 per command (log, index,
    heads, idempotency rows, and the lists that held them), enough to trigger a young collection
    in the middle of most large commits. ``zip`` hands ``putmulti`` its pairs instead: it reuses
    one tuple, since ``putmulti`` lets go of each pair before asking for the next.
    """

    __slots__ = (
        "commands",
        "heads",
        "index_keys",
        "index_values",
        "known_commands",
        "log_keys",
        "log_values",
        "position",
        "snapshot_keys",
        "snapshot_values",
        "written_heads",
    )

    def __init__(self, head: int) -> None:
        self.position = head
        self.log_keys: list[bytes] = []
        self.log_values: list[bytes] = []
        self.index_keys: list[bytes] = []
        self.index_values: list[bytes] = []
        self.heads: dict[bytes, int] = {}
        self.commands: dict[str, CommandRecord] = {}
        self.known_commands: dict[str, CommandRecord] = {}
        self.snapshot_keys: list[bytes] = []
        self.snapshot_values: list[bytes] = []
        self.written_heads: set[bytes] = set()


def append_in_txn(  # noqa: PLR0917 - internal: the tables are passed explicitly, in order
    txn: Txn,
    dbs: dict[str, Database],
    codec: Codec,
    frames: LogFrames,
    appends: Sequence[StreamAppend],
    head: int,
    now: int,
    heads: HeadsCache,
) -> tuple[list[Committed | EngineError], int]:
    """Append every valid append of the batch inside ``txn``; see ``EventStore.append_batch``.

    The streams' heads are read from ``heads`` where it holds them (the caller has begun its
    token), and the batch's are put there before the commit (see :mod:`store._heads`).

    Returns:
        One result per append, in order, and the new head position.

    Raises:
        lmdb.Error: The transaction failed (the caller aborts it; nothing is written).
        CommitFailed: An append-mode put was refused (the log is not in the state we think),
            or the stream index already held a version: the caller aborts the transaction.
    """
    batch = _Batch(head)
    _prefetch(txn, dbs, frames, appends, batch, heads=heads)
    results: list[Committed | EngineError] = []
    for append in appends:
        try:
            results.append(_append_one(codec, batch, append, now))
        except (ConcurrencyConflict, IdempotencyConflict, InvalidCommand) as error:
            results.append(error)
    command_keys = _flush(txn, dbs, frames, batch)
    heads.put(batch.heads)
    if command_keys:
        heads.raise_command_top(max(command_keys))
    return results, batch.position


def _prefetch(
    txn: Txn,
    dbs: dict[str, Database],
    frames: LogFrames,
    appends: Sequence[StreamAppend],
    batch: _Batch,
    *,
    heads: HeadsCache,
) -> None:
    # One getmulti per table instead of a get per append: each py-lmdb call releases and
    # re-takes the GIL, which is what costs under contention with reader threads.
    stream_keys: set[bytes] = set()
    command_keys: set[bytes] = set()
    for append in appends:
        try:
            stream_keys.add(stream_key(append.stream_type, append.stream_id))
            if append.command_id:
                command_keys.add(_command_key(append.stream_id, append.command_id))
        except InvalidCommand:
            continue  # reported by _append_one, in order
    batch.heads, missing = heads.split(stream_keys)
    if missing:
        found = dict(txn.cursor(db=dbs["heads"]).getmulti(sorted(missing)))
        batch.heads.update((key, int.from_bytes(found.get(key, b""), "big")) for key in missing)
    if command_keys:
        top = heads.command_top
        if top is None:
            top = last_command_key(txn, dbs["commands"])
            heads.raise_command_top(top)
        # A key above the greatest the table holds is a new command: no lookup (time-ordered
        # ids, the default, nearly always are).
        known = sorted(key for key in command_keys if key <= top)
        for key, raw in txn.cursor(db=dbs["commands"]).getmulti(known) if known else ():
            command_id = command_id_of(bytes(key))
            batch.known_commands[command_id] = decode_command(
                txn, dbs["log"], frames, command_id, raw
            )


def _known_command(batch: _Batch, append: StreamAppend) -> Committed | None:
    command_id = append.command_id
    earlier = batch.commands.get(command_id) or batch.known_commands.get(command_id)
    if earlier is None:
        _command_key(append.stream_id, command_id)  # validates it before anything is written
        return None
    if earlier.fingerprint != append.fingerprint:
        raise IdempotencyConflict(command_id)
    return Committed(
        earlier.stream_id,
        earlier.version,
        earlier.first_position,
        earlier.last_position,
        duplicate=True,
    )


def _check_events(
    codec: Codec, stream_id: str, current: int, events: Sequence[msgspec.Struct]
) -> None:
    """Refuse events the codec does not know, or more than the stream's versions can hold."""
    if current + len(events) > MAX_STREAM_VERSION:
        raise InvalidCommand(
            stream_id,
            "stream_too_long",
            f"the stream is at version {current}: it holds at most {MAX_STREAM_VERSION} events",
        )
    for event in events:
        if not codec.is_registered(event):
            raise InvalidCommand(
                stream_id,
                "unknown_event_type",
                f"{type(event).__name__} is not registered in the store's codec",
            )


def _append_one(codec: Codec, batch: _Batch, append: StreamAppend, now: int) -> Committed:
    stream_id = append.stream_id
    key_of_stream = stream_key(append.stream_type, stream_id)
    command_id = append.command_id
    if command_id:
        duplicate = _known_command(batch, append)
        if duplicate is not None:
            return duplicate
    current = batch.heads[key_of_stream]
    if append.expected_version != current:
        raise ConcurrencyConflict(stream_id, append.expected_version, current)
    events = append.events
    _check_events(codec, stream_id, current, events)
    timestamp = append.timestamp or now
    first = batch.position + 1 if events else 0
    version = current
    position = batch.position
    encode = codec.encode_record
    stream_type = append.stream_type
    log_keys, log_values = batch.log_keys, batch.log_values
    index_keys, index_values = batch.index_keys, batch.index_values
    before = len(log_keys)
    try:
        for event in events:
            position += 1
            version += 1
            key = position.to_bytes(8, "big")
            log_values.append(
                encode(position, stream_id, stream_type, version, event, timestamp, command_id)
            )
            log_keys.append(key)
            index_keys.append(key_of_stream)
            index_values.append(version.to_bytes(4, "big") + key)
    except (msgspec.EncodeError, OverflowError, TypeError) as error:
        # Encoded before anything is put, so the append can fail alone: its rows go again.
        for rows in (log_keys, log_values, index_keys, index_values):
            del rows[before:]
        raise InvalidCommand(
            stream_id, "unencodable_event", f"an event cannot be encoded: {error}"
        ) from error
    batch.position = position
    last = position if events else 0
    batch.heads[key_of_stream] = version
    batch.written_heads.add(key_of_stream)
    if command_id:
        batch.commands[command_id] = CommandRecord(
            command_id, append.fingerprint, stream_id, version, first, last
        )
    if append.snapshot is not None:
        batch.snapshot_values.append(
            encode_snapshot(version, append.snapshot_schema, append.snapshot)
        )
        batch.snapshot_keys.append(key_of_stream)
    return Committed(stream_id, version, first, last)


def _flush(txn: Txn, dbs: dict[str, Database], frames: LogFrames, batch: _Batch) -> list[bytes]:
    """Write the batch's rows; return the idempotency keys it wrote."""
    count = len(batch.log_keys)
    if count:
        values = batch.log_values
        if frames.current is not None:
            # One zstd call for the whole batch (see store._frames: never one per record).
            values = frames.compress(values)
        consumed, added = txn.cursor(db=dbs["log"]).putmulti(
            zip(batch.log_keys, values, strict=True), append=True
        )
        # Append mode silently skips a key that is not above the last one: a skipped event
        # would be a lost event, so the whole transaction fails instead.
        if added != count or consumed != count:
            raise CommitFailed(
                f"log append wrote {added} of {count} events: positions are not "
                "above the log's head"
            )
        # dupdata=False: an entry already there is refused, not added twice. The heads table is
        # what rules out a version written twice (every append was checked against it).
        _, added = txn.cursor(db=dbs["index"]).putmulti(
            zip(batch.index_keys, batch.index_values, strict=True), dupdata=False
        )
        if added != len(batch.index_keys):
            raise CommitFailed("the stream index already holds some of these events")
    if batch.written_heads:
        heads = batch.heads
        txn.cursor(db=dbs["heads"]).putmulti(
            zip(
                batch.written_heads,
                [heads[key].to_bytes(8, "big") for key in batch.written_heads],
                strict=True,
            )
        )
    records = batch.commands.values()
    command_keys = [command_key(record.command_id) for record in records]
    if command_keys:
        txn.cursor(db=dbs["commands"]).putmulti(
            zip(command_keys, [encode_command(record) for record in records], strict=True)
        )
    if batch.snapshot_keys:
        txn.cursor(db=dbs["snapshots"]).putmulti(
            zip(batch.snapshot_keys, batch.snapshot_values, strict=True)
        )
    return command_keys
