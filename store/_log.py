"""The event log inside one LMDB environment: batch append, stream and global reads, idempotency.

The batch append itself (checks, encoding, the bulk puts) is :func:`store._append.append_in_txn`;
this module holds the keys it writes under, the reads and the idempotency lookup.

Tables (named LMDB databases):

* ``log``: 8-byte big-endian position -> envelope (see :mod:`store._codec`). Positions are
  assigned inside the single write transaction, so they are gap-free and in commit order.
* ``index``: the stream index, ``stream key`` -> one duplicate per event, ``4-byte version +
  8-byte position`` (LMDB ``DUPSORT | DUPFIXED``: the key is stored once per stream and each
  event costs 12 bytes, packed; duplicates sort by version). It replaced ``streams`` (one
  ``stream key + NUL + 8-byte version`` row per event, half-empty pages under interleaved
  streams: ~118 B per event on disk against ~12), see :mod:`store._index_upgrade`.
* ``heads``: ``stream key`` -> 8-byte version of the stream's last event (one ``getmulti`` per
  append batch reads every head it needs; the index alone would take a cursor walk per stream).
* ``commands``: ``command_id`` -> msgpack ``(fingerprint, first, last)`` (see
  :mod:`store._commands`; rows of commands without events keep the stream id and version).

A stream is named by its aggregate type *and* id: its key is ``stream_type + NUL + stream_id``
(see :func:`stream_key`), so two aggregate types may use the same id without sharing a stream.
Data directories of the older layout (keys of the id alone) are rewritten at open by
:mod:`store._upgrade`.

Every function here works inside a transaction the caller owns; :mod:`store._store` owns the
transactions, the locks and the map growth.
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from domain.errors import CorruptLog, InvalidCommand
from store._commands import command_key, decode_command
from store._records import CommandRecord, StreamAppend

if TYPE_CHECKING:
    from store._env import Database, Txn
    from store._frames import LogFrames

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_STREAM_KEY_BYTES",
    "MAX_STREAM_VERSION",
    "checked_command_key",
    "index_entry",
    "last_command_key",
    "last_position",
    "lookup_command_in_txn",
    "position_key",
    "read_log_values",
    "stream_key",
    "stream_positions",
    "stream_version_in_txn",
    "top_command_key",
]

# LMDB's default maximum key size is 511 bytes. A command id is a key of its own.
MAX_KEY_BYTES: Final = 500
# The older stream index added NUL + an 8-byte version to a stream key (type + NUL + id): the
# limit stays, so every stream of an older directory and every new one fit either layout.
MAX_STREAM_KEY_BYTES: Final = 511 - 9
MAX_STREAM_VERSION: Final = 2**32 - 1
"""The highest version a stream may reach: the index stores versions in 4 bytes."""
# A read of a stream's tail seeks to its first version and steps (one py-lmdb call, hence one
# GIL hand-off, per event) when the tail is short and the stream long; otherwise one getmulti
# copies every entry of the stream (12 bytes each) and the tail is sliced from it.
_SEEK_TAIL: Final = 64
_SEEK_STREAM: Final = 4096

_PACK_POSITION: Final = struct.Struct(">Q").pack
_SECOND: Final = operator.itemgetter(1)
_INDEX_ENTRY_BYTES: Final = 12


def position_key(position: int) -> bytes:
    """Return the log key of ``position`` (8 bytes big-endian: byte order = numeric order)."""
    return position.to_bytes(8, "big")


def index_entry(version: int, position_key: bytes) -> bytes:
    """Return the stream index's entry of one event: 4-byte version + its 8-byte log key."""
    return version.to_bytes(4, "big") + position_key


def stream_key(stream_type: str, stream_id: str) -> bytes:
    """Return the key of a stream: ``stream_type + NUL + stream_id``, both UTF-8.

    Raises:
        InvalidCommand: The type or the id is empty, not a str, contains NUL or is not valid
            UTF-8, or the key is longer than :data:`MAX_STREAM_KEY_BYTES` (502) bytes.
    """
    owner = stream_id if isinstance(stream_id, str) else str(stream_id)
    raw_id = _name_bytes(stream_id, owner, "invalid_stream_id", "stream id")
    raw_type = _name_bytes(stream_type, owner, "invalid_stream_type", "stream type")
    key = raw_type + b"\x00" + raw_id
    if len(key) > MAX_STREAM_KEY_BYTES:
        room = MAX_STREAM_KEY_BYTES - 1 - len(raw_type)
        if room < 1:
            raise InvalidCommand(
                owner,
                "invalid_stream_type",
                f"stream type is {len(raw_type)} bytes; the limit is {MAX_STREAM_KEY_BYTES - 2}",
            )
        raise InvalidCommand(
            owner,
            "invalid_stream_id",
            f"stream id is {len(raw_id)} bytes; the limit is {room} "
            f"(the key of a stream holds its type {stream_type[:40]!r} too)",
        )
    return key


def _name_bytes(value: str, owner: str, rule: str, what: str) -> bytes:
    """Return a stream type or id as UTF-8: a non-empty str without NUL."""
    if not isinstance(value, str) or not value:
        raise InvalidCommand(owner, rule, f"a {what} is a non-empty str")
    if "\x00" in value:
        raise InvalidCommand(owner, rule, f"a {what} must not contain NUL")
    try:
        return value.encode()
    except UnicodeEncodeError as error:
        raise InvalidCommand(
            owner, rule, f"a {what} must be valid UTF-8 ({error.reason})"
        ) from error


# Public, unlike the other validators here: store._append checks a batch's command ids with it.
def checked_command_key(stream_id: str, command_id: str) -> bytes:
    """Return the key of a valid command id (see store._commands).

    Raises:
        InvalidCommand: The id is not valid UTF-8, holds NUL (a key starting with NUL is a
            packed uuid) or is longer than 500 bytes.
    """
    if "\x00" in command_id:
        raise InvalidCommand(stream_id, "invalid_command_id", "a command id must not contain NUL")
    _utf8_key(command_id, stream_id, "invalid_command_id", "command id")
    return command_key(command_id)


def _utf8_key(value: str, owner: str, rule: str, what: str) -> bytes:
    """Return ``value`` as key bytes: valid UTF-8, at most MAX_KEY_BYTES long."""
    try:
        raw = value.encode()
    except UnicodeEncodeError as error:
        raise InvalidCommand(owner, rule, f"{what} must be valid UTF-8 ({error.reason})") from error
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidCommand(owner, rule, f"{what} is {len(raw)} bytes; the limit is 500")
    return raw


def last_position(txn: Txn, log_db: Database) -> int:
    """Return the last position in the log (0 if empty)."""
    cursor = txn.cursor(db=log_db)
    if not cursor.last():
        return 0
    return int.from_bytes(cursor.key(), "big")


def stream_version_in_txn(txn: Txn, heads_db: Database, key: bytes) -> int:
    """Return the head version of the stream whose :func:`stream_key` is ``key`` (0: none)."""
    raw = txn.get(key, db=heads_db)
    return 0 if raw is None else int.from_bytes(raw, "big")


def last_command_key(txn: Txn, commands_db: Database) -> bytes:
    """Return the greatest key of the idempotency table (``b""`` when it is empty)."""
    cursor = txn.cursor(db=commands_db)
    return bytes(cursor.key()) if cursor.last() else b""


def top_command_key(appends: Sequence[StreamAppend]) -> bytes:
    """Return the greatest command-id key ``appends`` could record (``b""`` for none)."""
    top = b""
    for append in appends:
        try:
            key = command_key(append.command_id)
        except UnicodeEncodeError:
            continue  # refused by the append itself: never recorded
        top = max(top, key)
    return top


def lookup_command_in_txn(
    txn: Txn, dbs: dict[str, Database], frames: LogFrames, command_id: str
) -> CommandRecord | None:
    """Return the idempotency row of ``command_id``, or None."""
    raw = txn.get(checked_command_key("", command_id), db=dbs["commands"])
    if raw is None:
        return None
    return decode_command(txn, dbs["log"], frames, command_id, raw)


def read_log_values(  # noqa: PLR0917 - the scan's hot path, positional
    txn: Txn, log_db: Database, frames: LogFrames, from_position: int, limit: int, head: int
) -> list[bytes]:
    """Return up to ``limit`` consecutive log envelopes from ``from_position`` up to ``head``.

    Compressed values come back expanded (:mod:`store._frames`): plain msgpack envelopes.

    One ``getmulti`` call instead of a cursor walk: py-lmdb releases the GIL on every cursor
    step, and under contention each re-acquisition can wait a whole switch interval.
    ``head`` must have been read before ``txn`` began, so every key exists in its snapshot.
    """
    last = min(from_position + limit - 1, head)
    if last < from_position:
        return []
    # map() over C callables: no Python frame per record (this is the scan's hot loop).
    positions = range(from_position, last + 1)
    keys = list(map(_PACK_POSITION, positions))
    values = list(map(_SECOND, txn.cursor(db=log_db).getmulti(keys)))
    return frames.expand(txn, values, positions)


def stream_positions(
    txn: Txn, dbs: dict[str, Database], key: bytes, from_version: int
) -> list[bytes]:
    """Return the log keys of a stream's events from ``from_version`` on, in version order.

    ``key`` is the stream's :func:`stream_key`.

    Raises:
        CorruptLog: The index does not hold every version up to the stream's head.
    """
    head = stream_version_in_txn(txn, dbs["heads"], key)
    first = max(from_version, 1)
    if first > head:
        return []
    cursor = txn.cursor(db=dbs["index"])
    if head - first < _SEEK_TAIL and head > _SEEK_STREAM:
        entries = []
        if cursor.set_range_dup(key, first.to_bytes(4, "big")):
            entries = list(itertools.islice(cursor.iternext_dup(keys=False), head - first + 1))
    else:
        found = cursor.getmulti([key], dupdata=True, dupfixed_bytes=_INDEX_ENTRY_BYTES)
        entries = list(map(_SECOND, found))[first - 1 : head]
    if len(entries) != head - first + 1 or (
        entries and int.from_bytes(entries[0][:4], "big") != first
    ):
        raise CorruptLog(
            0,
            f"the stream index of {key!r} does not hold versions {first}..{head} "
            f"({len(entries)} entries found)",
        )
    return [entry[4:] for entry in entries]
