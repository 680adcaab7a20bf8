"""What the event store keeps beside the log: snapshots, retention, parked events, dictionaries.

:class:`~store.EventStore` is the log's facade (append, read, look a command up); the tables
around the log are kept here, in a base class of it, so that each module holds one concern:

- snapshots of aggregates (:mod:`store._snapshots`), pruned when their schema changes;
- idempotency retention (:mod:`store._retention`): pruning in small batches, the table's figures;
- parked (poison) events of the views (:mod:`store._checkpoints`);
- the log's compression dictionaries (:mod:`store._training`);
- view data an older layout kept in the log's environment.

Every method runs in one short transaction of the store's (:class:`~store._txns.Transactions`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from store import _checkpoints, _log, _retention, _snapshots
from store._logging import get_logger
from store._txns import Transactions

if TYPE_CHECKING:
    from collections.abc import Mapping

    from store._bounds import KeyBounds
    from store._env import Txn
    from store._frames import Dictionary, LogFrames
    from store._records import ParkedEvent, Snapshot
    from store._retention import IdempotencyStats, PruneResult
    from store._training import DictionaryTraining

__all__ = ["StoreUpkeep"]

log = get_logger(__name__)


class StoreUpkeep(Transactions):
    """The tables around the log; the base of :class:`~store.EventStore`, which sets them up.

    Attributes:
        frames: The log's compression frames (dictionaries in use).
    """

    # Set by EventStore.__init__ before any of these methods can run.
    frames: LogFrames
    _head: int
    _bounds: KeyBounds
    _training: DictionaryTraining

    def _new_stream(self, key: bytes) -> bool:
        """Return True if the stream of ``key`` has no event yet: its reads need no LMDB.

        Checks that the store is open first, as a read would.
        """
        if self._bounds.stream_is_new(key):
            self._check_open()
            return True
        return False

    # ------------------------------------------------------------ compression

    def train_dictionary_if_due(self) -> Dictionary | None:
        """Train a compression dictionary if the log grew enough since the last one.

        The engine's housekeeping thread calls it; see :mod:`store._training`.
        """
        return self._training.if_due(self._head)

    def train_dictionary(self) -> Dictionary | None:
        """Train a dictionary on records sampled over the whole log; install it if it pays.

        Returns:
            The dictionary installed, or None (see :meth:`DictionaryTraining.now
            <store._training.DictionaryTraining.now>`).
        """
        return self._training.now(self._head)

    # ------------------------------------------------------------ snapshots

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` as its stream's latest, unless a newer one is stored.

        Raises:
            InvalidCommand: The snapshot's stream type or id is not valid.
        """
        db = self._dbs["snapshots"]
        key = _log.stream_key(snapshot.stream_type, snapshot.stream_id)
        self._bounds.raise_for_snapshot(key)  # before the write: see store._bounds
        self.write(lambda txn: _snapshots.save_snapshot_in_txn(txn, db, key, snapshot))

    def load_snapshot(self, stream_id: str, *, stream_type: str) -> Snapshot | None:
        """Return the latest snapshot of the stream ``(stream_type, stream_id)``, or None.

        Raises:
            InvalidCommand: The stream type or id is not valid.
        """
        db = self._dbs["snapshots"]
        key = _log.stream_key(stream_type, stream_id)
        if self._new_stream(key):
            return None
        return self.read(
            lambda txn: _snapshots.load_snapshot_in_txn(txn, db, key, stream_id, stream_type)
        )

    def drop_stale_snapshots(
        self, schemas: Mapping[str, int], after: bytes = b"", limit: int = 1000
    ) -> tuple[bytes | None, int]:
        """Drop up to ``limit`` walked snapshots whose schema is not ``schemas[stream type]``.

        Returns:
            Where to go on from (None: the whole table was walked) and how many were dropped.
        """
        db = self._dbs["snapshots"]
        return self.write(
            lambda txn: _snapshots.drop_stale_snapshots_in_txn(txn, db, after, schemas, limit)
        )

    def snapshot_count(self) -> int:
        """Return how many snapshots are stored (at most one per stream)."""
        db = self._dbs["snapshots"]
        return self.read(lambda txn: int(txn.stat(db)["entries"]))

    # ------------------------------------------------------------ idempotency retention

    def prune_commands(
        self, *, cutoff_ns: int | None = None, keep: int | None = None, limit: int = 1000
    ) -> PruneResult:
        """Forget the command ids of one small batch beyond the window, in one write txn.

        See :mod:`store._retention`: walks at most ``limit`` log positions from the pruning
        cursor, deleting the rows of commands older than ``cutoff_ns`` (ns, UTC) or beyond the
        ``keep`` most recent; the cursor commits with the deletions.
        """
        dbs, head, frames = self._dbs, self._head, self.frames
        return self.write(
            lambda txn: _retention.prune_commands_in_txn(
                txn, dbs, frames, head, cutoff_ns, keep, limit
            )
        )

    def idempotency_stats(self) -> IdempotencyStats:
        """Return the idempotency table's size, its oldest kept timestamp and the cursor."""
        dbs, head, frames = self._dbs, self._head, self.frames
        return self.read(lambda txn: _retention.idempotency_stats_in_txn(txn, dbs, frames, head))

    # ------------------------------------------------------------ parked events

    def park(self, parked: ParkedEvent) -> None:
        """Record a poison event of a view with its error."""
        db = self._dbs["parked"]
        self.write(lambda txn: _checkpoints.park_in_txn(txn, db, parked))

    def parked(self, view: str | None = None) -> list[ParkedEvent]:
        """Return the parked events of ``view``, or of every view, by view then position."""
        db = self._dbs["parked"]
        return self.read(lambda txn: _checkpoints.parked_in_txn(txn, db, view))

    def unpark(self, view: str, position: int) -> bool:
        """Forget a parked event; return whether it was parked."""
        db = self._dbs["parked"]
        return self.write(lambda txn: _checkpoints.unpark_in_txn(txn, db, view, position))

    def drop_legacy_views(self) -> int:
        """Drop view data an older layout kept in the log's environment; return databases dropped.

        Views now live in their own environment (:class:`~store.ViewStore`) and rebuild there
        from the log; the old ``view:*`` databases and their checkpoints would only waste space.
        """

        def legacy(txn: Txn) -> list[bytes]:
            names = txn.cursor().iternext(keys=True, values=False)
            return [name for name in names if name.startswith(b"view:")]

        names = self.read(legacy)
        if not names:
            return 0
        checkpoints = self._dbs["checkpoints"]

        def drop(txn: Txn) -> None:
            for name in names:
                txn.drop(self.env.open_db(name, txn=txn, create=False), delete=True)
            txn.drop(checkpoints, delete=False)

        self.write(drop)
        log.info("legacy_views_dropped", path=str(self.path), databases=len(names))
        return len(names)
