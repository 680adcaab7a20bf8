"""An LMDB view's two slots: which one is live, and which version wrote the view's rows.

Each LMDB view owns two sub-databases of the views environment, ``view:<name>:0`` and
``view:<name>:1``. The shared database ``view:_slots`` records which of them is live (a
rebuild fills the other one, then flips the pointer); ``view:_versions`` records the
read-model version and key layout that wrote the view's rows (see :mod:`views._lmdb`). Every
change here is one write transaction together with the checkpoints it moves, so a reader sees
a view either before it or after it.
"""

from __future__ import annotations

import lmdb

from store import ViewStore
from views._lmdb_keys import parse_version_record, version_record
from views._lmdb_storage import SLOTS_DB, VERSIONS_DB, Db

__all__ = ["Slots", "live_slot"]


def live_slot(txn: lmdb.Transaction, slots_db: Db, key: bytes) -> int:
    """Return the live slot of the view named ``key`` in ``view:_slots`` (0 until a flip).

    The one reader of the pointer's format (:meth:`Slots.flip` writes it), for the view that
    writes the slots and for a :class:`~views._followed.FollowedView` of another process.
    """
    return 1 if txn.get(key, db=slots_db) == b"1" else 0


class Slots:
    """The slot databases of one view and its records in the shared ones.

    Args:
        store: The open views store.
        name: The view's name.
    """

    __slots__ = ("_key", "_slots_db", "_store", "_versions_db", "dbs")

    def __init__(self, store: ViewStore, name: str) -> None:
        self._store = store
        self._slots_db: Db = store.open_db(SLOTS_DB)
        self._versions_db: Db = store.open_db(VERSIONS_DB)
        self.dbs: tuple[Db, Db] = (store.open_db(f"view:{name}:0"), store.open_db(f"view:{name}:1"))
        self._key = name.encode()

    def live(self, txn: lmdb.Transaction) -> int:
        """Return the live slot (0 until a rebuild's shadow was adopted)."""
        return live_slot(txn, self._slots_db, self._key)

    def stored_version(self, txn: lmdb.Transaction) -> tuple[int, int]:
        """Return the (read-model version, key layout) that wrote the view's rows."""
        return parse_version_record(txn.get(self._key, db=self._versions_db))

    def restart(self, version: int, checkpoint_keys: tuple[str, ...]) -> None:
        """Empty both slots, set ``checkpoint_keys`` to 0 and record ``version``: one transaction.

        The view's rows were written by another version or key layout: they would be misread.
        """
        store = self._store

        def reset(txn: lmdb.Transaction) -> None:
            for db in self.dbs:
                txn.drop(db, delete=False)
            for key in checkpoint_keys:
                store.set_checkpoint(key, 0, txn)
            txn.put(self._key, version_record(version), db=self._versions_db)

        store.write(reset)

    def empty(self, slot: int, checkpoint_key: str) -> None:
        """Empty ``slot`` and set ``checkpoint_key`` to 0, in one transaction."""
        db, store = self.dbs[slot], self._store

        def reset(txn: lmdb.Transaction) -> None:
            txn.drop(db, delete=False)
            store.set_checkpoint(checkpoint_key, 0, txn)

        store.write(reset)

    def flip(self, to: int, position: int, checkpoint_key: str, shadow_key: str) -> None:
        """Make slot ``to`` live at ``position`` and empty the other one, in one transaction.

        The live checkpoint moves to ``position``, the shadow's (``shadow_key``) back to 0.
        """
        old_db, store = self.dbs[1 - to], self._store

        def flip(txn: lmdb.Transaction) -> None:
            txn.put(self._key, str(to).encode(), db=self._slots_db)
            store.set_checkpoint(checkpoint_key, position, txn)
            store.set_checkpoint(shadow_key, 0, txn)
            txn.drop(old_db, delete=False)

        store.write(flip)
