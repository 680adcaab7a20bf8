"""Keys and rows of the idempotency table (``commands``): what each command id committed.

A key is the command id: ``0x00`` + its 16 bytes when it is a uuid in canonical lowercase text
(``domain.ids.new_id`` makes these), else its UTF-8 (which never starts with ``0x00``: the store
refuses command ids with NUL). 17 bytes instead of 36 for the common id: ~25 B per command on
disk. Byte order is kept (hex digits sort as the bytes they spell), so time-ordered ids still
append. Directories of layout 3 and older are re-keyed at open (:mod:`store._command_keys`).

A row is a msgpack array in one of two shapes:

* ``(fingerprint, first, last)``: a command that appended events (nearly all). The stream id and
  the version after it are in the envelope of its last event (position ``last``), so they are
  not stored again: 29 bytes instead of ~60 for a uuid stream id. They are read back only for a
  duplicate, which is rare.
* ``(fingerprint, stream_id, version, first, last)``: a command that appended no events (its
  positions are 0: no envelope holds its stream), and every row written before the short shape
  existed. Both shapes are read; neither is rewritten.

Both end with ``first, last``: the idempotency retention reads only those
(:func:`command_span`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

import msgspec

from domain.errors import CorruptLog
from store._records import CommandRecord
from store._uuids import uuid_bytes, uuid_text

if TYPE_CHECKING:
    from store._env import Database, Txn
    from store._frames import LogFrames

__all__ = ["command_id_of", "command_key", "command_span", "decode_command", "encode_command"]

_PACKED: Final = b"\x00"
_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(list[Any])
_SHORT: Final = 3
_LONG: Final = 5


class _Envelope(msgspec.Struct, array_like=True, frozen=True, gc=False):
    # The leading fields of a log envelope (store._codec): msgspec ignores the trailing ones.
    position: int
    stream_id: str
    stream_type: str
    version: int


_ENVELOPE: Final = msgspec.msgpack.Decoder(_Envelope)


# Cached: one append keys its command id up to four times (the key bounds, the prefetch, the
# duplicate check, the row's put), and a miss costs ~0.5 us against ~60 ns for a hit.
@functools.lru_cache(maxsize=8192)
def command_key(command_id: str) -> bytes:
    """Return the key of a command id (see the module docstring).

    Raises:
        UnicodeEncodeError: ``command_id`` is not valid UTF-8 (the store refuses it first).
    """
    raw = uuid_bytes(command_id)
    return command_id.encode() if raw is None else _PACKED + raw


def command_id_of(key: bytes) -> str:
    """Return the command id whose :func:`command_key` is ``key``."""
    if key[:1] == _PACKED and len(key) == 17:  # noqa: PLR2004 - the marker and 16 uuid bytes
        return uuid_text(key[1:])
    return key.decode()


def encode_command(record: CommandRecord) -> bytes:
    """Return the row of ``record``: the short shape when it appended events."""
    if record.last_position:
        return _ENCODER.encode((record.fingerprint, record.first_position, record.last_position))
    return _ENCODER.encode(
        (
            record.fingerprint,
            record.stream_id,
            record.version,
            record.first_position,
            record.last_position,
        )
    )


def command_span(raw: bytes) -> tuple[int, int]:
    """Return the (first, last) positions of a row of either shape."""
    row = _DECODER.decode(raw)
    return int(row[-2]), int(row[-1])


def decode_command(
    txn: Txn, log_db: Database, frames: LogFrames, command_id: str, raw: bytes
) -> CommandRecord:
    """Return the record of a row of either shape (a short one reads its last event's envelope).

    Raises:
        CorruptLog: The row is of neither shape (``.position`` 0), or its last event is missing
            or unreadable (``.position`` names it: a retry of that command fails there).
    """
    try:
        row = _DECODER.decode(raw)
    except msgspec.DecodeError as error:
        raise CorruptLog(
            0, f"the idempotency row of {command_id!r} is unreadable: {error}"
        ) from error
    if len(row) == _LONG:
        fingerprint, stream_id, version, first, last = row
        return CommandRecord(command_id, fingerprint, stream_id, version, first, last)
    if len(row) != _SHORT:
        raise CorruptLog(0, f"the idempotency row of {command_id!r} has {len(row)} fields")
    fingerprint, first, last = row
    value = txn.get(last.to_bytes(8, "big"), db=log_db)
    if value is None:
        raise CorruptLog(last, f"command {command_id!r} names an event that is not in the log")
    try:
        envelope = _ENVELOPE.decode(frames.expand_one(txn, value, last))
    except msgspec.DecodeError as error:
        # The command's own last event is damaged: its retry could not be answered anyway.
        raise CorruptLog(last, f"the envelope of command {command_id!r} is unreadable") from error
    return CommandRecord(command_id, fingerprint, envelope.stream_id, envelope.version, first, last)
