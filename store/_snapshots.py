"""Snapshots: the latest encoded state per stream, with its version and schema version.

Table ``snapshots``: stream key (``stream_type + NUL + stream_id``, see
:func:`store._log.stream_key`) -> msgpack ``(version, schema_version, state)``. Only the latest
is kept; an older snapshot never replaces a newer one. So a superseded snapshot never lingers:
saving a stream's new snapshot overwrites its previous one in place (one row per stream).

A snapshot whose ``schema_version`` is not its decider's current ``state_schema_version`` is
never loaded (the aggregate replays its stream instead), so it would only take space until the
stream's next snapshot, which an idle aggregate may never take: the engine's housekeeping walks
the table once after each open and drops them (:func:`drop_stale_snapshots_in_txn`, in small
batches).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import msgspec

from store._records import Snapshot

if TYPE_CHECKING:
    from store._env import Database, Txn

__all__ = [
    "drop_stale_snapshots_in_txn",
    "encode_snapshot",
    "load_snapshot_in_txn",
    "save_snapshot_in_txn",
]

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(tuple[int, int, bytes])


def encode_snapshot(version: int, schema_version: int, state: bytes) -> bytes:
    """Return the stored value of a snapshot."""
    return _ENCODER.encode((version, schema_version, state))


def load_snapshot_in_txn(
    txn: Txn, snapshots_db: Database, key: bytes, stream_id: str, stream_type: str
) -> Snapshot | None:
    """Return the latest snapshot of the stream whose key is ``key``, or None."""
    raw = txn.get(key, db=snapshots_db)
    if raw is None:
        return None
    version, schema_version, state = _DECODER.decode(raw)
    return Snapshot(stream_id, stream_type, version, schema_version, state)


def save_snapshot_in_txn(txn: Txn, snapshots_db: Database, key: bytes, snapshot: Snapshot) -> bool:
    """Store ``snapshot`` under ``key`` unless a newer one is stored; return whether it was."""
    raw = txn.get(key, db=snapshots_db)
    if raw is not None and _DECODER.decode(raw)[0] > snapshot.version:
        return False
    txn.put(
        key,
        encode_snapshot(snapshot.version, snapshot.schema_version, snapshot.state),
        db=snapshots_db,
    )
    return True


_SCHEMA_OF: Final = msgspec.msgpack.Decoder(tuple[int, int, msgspec.Raw])


def drop_stale_snapshots_in_txn(
    txn: Txn, snapshots_db: Database, after: bytes, schemas: Mapping[str, int], limit: int
) -> tuple[bytes | None, int]:
    """Delete snapshots whose state schema is not their type's current one, a batch at a time.

    Walks at most ``limit`` snapshots with keys after ``after`` (``b""``: from the start). A
    snapshot of a stream type missing from ``schemas`` is kept (another engine configuration
    may know that type).

    Returns:
        The last key walked (None once the table is done) and how many were deleted.
    """
    cursor = txn.cursor(db=snapshots_db)
    if not cursor.set_range(after) or (cursor.key() == after and not cursor.next()):
        return None, 0
    stale: list[bytes] = []
    last: bytes | None = None  # None: the walk reached the table's end
    for walked, (key, value) in enumerate(cursor.iternext()):
        if walked == limit:
            break
        last = key
        stream_type = key.split(b"\x00", 1)[0].decode(errors="replace")
        current = schemas.get(stream_type)
        if current is not None and _SCHEMA_OF.decode(value)[1] != current:
            stale.append(key)
    else:
        last = None
    for key in stale:
        txn.delete(key, db=snapshots_db)
    return last, len(stale)
