"""View checkpoints and parked (poison) events.

Tables: ``checkpoints``: view name -> 8-byte position; ``parked``: ``view + NUL + 8-byte
position`` -> msgpack ``(error, attempts, parked_at)``. Keys sort by view, then position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from store._records import ParkedEvent

if TYPE_CHECKING:
    from store._env import AnyTxn, Database, Txn

__all__ = [
    "all_checkpoints_in_txn",
    "checkpoint_in_txn",
    "park_in_txn",
    "parked_in_txn",
    "set_checkpoint_in_txn",
    "unpark_in_txn",
    "view_key",
]

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(tuple[str, int, int])
_MAX_VIEW_BYTES: Final = 400


def view_key(view: str) -> bytes:
    """Return the key of a view name.

    Raises:
        ValueError: The name is empty, contains NUL or is longer than 400 bytes.
    """
    raw = view.encode()
    if not raw or b"\x00" in raw or len(raw) > _MAX_VIEW_BYTES:
        raise ValueError(f"invalid view name {view!r}: non-empty, no NUL, at most 400 bytes")
    return raw


def checkpoint_in_txn(txn: Txn, db: Database, view: str) -> int:
    """Return the view's checkpoint (0 if none)."""
    raw = txn.get(view_key(view), db=db)
    return 0 if raw is None else int.from_bytes(raw, "big")


def all_checkpoints_in_txn(txn: Txn, db: Database) -> dict[str, int]:
    """Return every checkpoint by view name."""
    return {
        key.decode(): int.from_bytes(value, "big") for key, value in txn.cursor(db=db).iternext()
    }


def set_checkpoint_in_txn(txn: AnyTxn, db: Database, view: str, position: int) -> None:
    """Set the view's checkpoint."""
    txn.put(view_key(view), position.to_bytes(8, "big"), db=db)


def _parked_key(view: str, position: int) -> bytes:
    return view_key(view) + b"\x00" + position.to_bytes(8, "big")


def park_in_txn(txn: Txn, db: Database, parked: ParkedEvent) -> None:
    """Record a parked event (replacing an earlier record of the same view and position)."""
    txn.put(
        _parked_key(parked.view, parked.position),
        _ENCODER.encode((parked.error, parked.attempts, parked.parked_at)),
        db=db,
    )


def parked_in_txn(txn: Txn, db: Database, view: str | None) -> list[ParkedEvent]:
    """Return the parked events of ``view`` (or of every view), by view then position."""
    cursor = txn.cursor(db=db)
    prefix = b"" if view is None else view_key(view) + b"\x00"
    if not cursor.set_range(prefix):
        return []
    found: list[ParkedEvent] = []
    for key, value in cursor.iternext():
        if not key.startswith(prefix):
            break
        # The position may itself contain NUL bytes: split by length, not by separator.
        name, position = key[:-9].decode(), int.from_bytes(key[-8:], "big")
        error, attempts, parked_at = _DECODER.decode(value)
        found.append(ParkedEvent(name, position, error, attempts, parked_at))
    return found


def unpark_in_txn(txn: Txn, db: Database, view: str, position: int) -> bool:
    """Remove a parked event; return whether it was there."""
    deleted: bool = txn.delete(_parked_key(view, position), db=db)
    return deleted
