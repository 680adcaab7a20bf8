"""Snapshots: the latest encoded state per stream, with its version and schema version.

Table ``snapshots``: stream key (``stream_type + NUL + stream_id``, see
:func:`store._log.stream_key`) -> msgpack ``(version, schema_version, state)``. Only the latest
is kept; an older snapshot never replaces a newer one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from store._records import Snapshot

if TYPE_CHECKING:
    from store._env import Database, Txn

__all__ = ["encode_snapshot", "load_snapshot_in_txn", "save_snapshot_in_txn"]

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
