"""The LMDB backend's storage: a read model's tables and indexes inside one view slot.

Two flavours over the same key layout (see :mod:`views._lmdb`): the plain ones read and write
through a transaction (queries); the batch ones compute a whole apply batch against a read
snapshot, keeping decoded rows and the pending writes, which :func:`~views._lmdb_batch.commit`
then writes in the short write transaction that also moves the checkpoint.

The plain flavour is here; the batch one is :mod:`views._lmdb_batch`, which shares this module's
key helper (:func:`text_key`) and re-exports the decoder cache (:func:`~views._view.row_decoder`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Final, Generic, TypeVar, cast

import lmdb
import msgspec

from views._lmdb_keys import pack, unpack
from views._view import row_decoder

__all__ = [
    "SLOTS_DB",
    "VERSIONS_DB",
    "Db",
    "LmdbStorage",
    "row_decoder",
    "text_key",
]

V = TypeVar("V")

# lmdb's stubs name the handle type privately (lmdb._Database); store.open_db() returns it.
Db = Any

SLOTS_DB: Final = "view:_slots"
VERSIONS_DB: Final = "view:_versions"  # the read-model version that wrote each view's rows
_MAX_PLAIN_KEY: Final = 400  # LMDB's default key limit is 511 bytes; leave room for prefixes
_encode = msgspec.msgpack.encode


def text_key(text: str) -> bytes:
    """Return the key bytes of ``text`` in a slot: packed, or hashed when too long."""
    raw = pack(text)
    if len(raw) <= _MAX_PLAIN_KEY:
        return raw
    return b"\xff" + hashlib.blake2b(raw, digest_size=32).digest()


def _items(entries: Iterator[tuple[Any, Any]]) -> Iterator[tuple[bytes, bytes]]:
    # The store's transactions are opened without buffers=True: keys and values are bytes.
    return cast("Iterator[tuple[bytes, bytes]]", entries)


class _LmdbTable(Generic[V]):
    __slots__ = ("_db", "_decode", "_prefix", "_txn")

    def __init__(
        self, txn: lmdb.Transaction, db: Db, prefix: bytes, decoder: msgspec.msgpack.Decoder[V]
    ) -> None:
        self._txn = txn
        self._db = db
        self._prefix = prefix
        self._decode = decoder.decode

    def get(self, key: str) -> V | None:
        raw = self._txn.get(self._prefix + text_key(key), db=self._db)
        return None if raw is None else self._decode(raw)

    def put(self, key: str, value: V) -> None:
        self._txn.put(self._prefix + text_key(key), _encode(value), db=self._db)

    def delete(self, key: str) -> None:
        self._txn.delete(self._prefix + text_key(key), db=self._db)

    def values(self) -> Iterator[V]:
        prefix, decode = self._prefix, self._decode
        cursor = self._txn.cursor(db=self._db)
        if not cursor.set_range(prefix):
            return
        for key, value in _items(cursor.iternext()):
            if not key.startswith(prefix):
                return
            yield decode(value)


class _LmdbIndex:
    __slots__ = ("_db", "_prefix", "_txn")

    def __init__(self, txn: lmdb.Transaction, db: Db, prefix: bytes) -> None:
        self._txn = txn
        self._db = db
        self._prefix = prefix

    def add(self, group: str, position: int, value: str) -> None:
        key = self._prefix + text_key(group) + b"\x00" + position.to_bytes(8, "big")
        self._txn.put(key, pack(value), db=self._db)

    def scan(self, group: str, *, reverse: bool = False) -> Iterator[str]:
        prefix = self._prefix + text_key(group) + b"\x00"
        # A group that itself contains NUL shares the prefix; the exact length tells them apart.
        length = len(prefix) + 8
        cursor = self._txn.cursor(db=self._db)
        if reverse:
            # Start at the last key below prefix[:-1] + b"\x01", the first key after the group.
            found = cursor.prev() if cursor.set_range(prefix[:-1] + b"\x01") else cursor.last()
            entries = cursor.iterprev() if found else iter(())
        else:
            entries = cursor.iternext() if cursor.set_range(prefix) else iter(())
        for key, value in _items(entries):
            if not key.startswith(prefix):
                return
            if len(key) == length:
                yield unpack(value)


class LmdbStorage:
    """A read-only :class:`~views._view.Storage` over one transaction: what queries use."""

    __slots__ = ("_db", "_txn")

    def __init__(self, txn: lmdb.Transaction, db: Db) -> None:
        self._txn = txn
        self._db = db

    def table(self, name: str, row_type: type[V]) -> _LmdbTable[V]:
        return _LmdbTable(
            self._txn, self._db, b"t" + name.encode() + b"\x00", row_decoder(row_type)
        )

    def index(self, name: str) -> _LmdbIndex:
        return _LmdbIndex(self._txn, self._db, b"i" + name.encode() + b"\x00")
