r"""The LMDB backend: a read model's tables in named databases of the views environment.

The views environment (:class:`store.ViewStore`, ``<data>/views/``) is apart from the log: a view
commit never takes the log's write lock nor adds an fsync to a command's commit.

Layout (:mod:`views._lmdb_slots`). Each view owns two sub-databases, ``view:<name>:0`` and
``view:<name>:1`` (two *slots*); the shared database ``view:_slots`` records which slot is live.
The live slot's checkpoint is the store checkpoint ``<name>``; a shadow (a rebuild in progress)
fills the other slot under the checkpoint ``<name>:shadow``. Adopting a shadow flips the slot
pointer, moves the checkpoint and empties the old slot in one write transaction, so a reader
sees either the old or the new view.
The shared database ``view:_versions`` records the read-model ``version`` that wrote each view's
rows and their key layout (none recorded: version 1, the only one before the record existed); a
view opened by another version or layout is emptied and replays the log from 0, since its rows
would be misread.

Keys inside a slot: ``b"t" + table + b"\\0" + key`` for table rows (msgpack-encoded values) and
``b"i" + index + b"\\0" + group + b"\\0" + position (8 bytes, big-endian)`` for index entries, so a
group's entries sort by position and a prefix scan reads them in order. A key, a group and an
index value are stored packed (:mod:`views._lmdb_keys`: a UUID in 17 bytes), and the record in
``view:_versions`` names that key layout too. Keys too long for LMDB (more than 400 bytes) are
replaced by ``b"\\xff"`` + a 32-byte BLAKE2b digest; no packed text starts with ``0xff`` (UTF-8
never holds it), so a digest never collides with a plain key.

Transactions. ``apply`` writes rows and checkpoint in ONE write transaction (``store.write``), so
a batch is applied exactly once or not at all. The read model computes the batch's changes
before, against a read snapshot (``store.read``), so the views store's write lock (which the other
LMDB views need too) is held only while the encoded rows are written. Every query
runs in its own short read transaction (``store.read``): it sees one committed state and never
pins pages for long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lmdb

from domain.errors import EngineClosed
from store import RecordedEvent, ViewStore, get_logger
from views._lmdb_batch import BatchChanges, commit, compute
from views._lmdb_bulk import BULK_ROWS, BulkRows
from views._lmdb_keys import KEY_LAYOUT
from views._lmdb_slots import Slots
from views._lmdb_storage import LmdbStorage
from views._row_cache import CachedStorage, NeedsLmdb, RowCache
from views._view import (
    Backend,
    ReadModel,
    Storage,
    View,
    check_query,
    check_up_to,
    model_version,
    row_fold_of,
    row_writer,
)

__all__ = ["LmdbView"]

_log = get_logger(__name__)


class LmdbView:
    """A read model persisted in LMDB; see :class:`~views.View` for the contract.

    Its checkpoint persists with its rows: after a restart it resumes where it stopped, without
    replaying the log.

    Args:
        model: The read model's logic.
        store: The open views store (its own LMDB environment, apart from the log).
        skip_unknown: Opt-in: the projector skips (and counts) events it cannot decode.
        bulk_rows: Rows a table of this view's shadows keeps decoded between write-outs (see
            :mod:`views._lmdb_bulk`).
    """

    backend: Backend = "lmdb"

    def __init__(
        self,
        model: ReadModel,
        store: ViewStore,
        *,
        skip_unknown: bool = False,
        shadow_slot: int | None = None,
        bulk_rows: int = BULK_ROWS,
    ) -> None:
        self.name = model.name
        self.tags = model.tags
        self.query_types = model.query_types
        self.skip_unknown = skip_unknown
        # A read model may ask for a projector of its own (see ReadModel): slow applies of it
        # then never hold the other views back.
        self.isolated = bool(getattr(model, "isolated", False))
        self.row_fold = row_fold_of(model)
        self._model = model
        self._store = store
        self._slots = Slots(store, model.name)
        self._slot_dbs = self._slots.dbs
        self._version = model_version(model)
        self._cache = RowCache()  # this slot's committed rows, decoded: see views._row_cache
        self._closed = False
        if shadow_slot is None:
            self._checkpoint_key = model.name
            # Rows another read-model version wrote would be misread: start this one afresh.
            stored = store.read(self._slots.stored_version)
            if stored != (self._version, KEY_LAYOUT):
                self._adopt_version(stored)
            self._slot = store.read(self._slots.live)
        else:  # a shadow writes to a fixed slot, never the live one
            self._slot = shadow_slot
            self._checkpoint_key = f"{model.name}:shadow"
        self._position = store.checkpoint(self._checkpoint_key)
        # A shadow keeps its rows decoded between write-outs (see views._lmdb_bulk): nothing
        # reads it before it is adopted, so it need not commit every batch.
        self._bulk_rows = bulk_rows
        self._bulk = (
            None
            if shadow_slot is None
            else BulkRows(
                store,
                self._slot_dbs[self._slot],
                self._checkpoint_key,
                model.apply,
                position=self._position,
                limit=bulk_rows,
            )
        )

    @property
    def is_shadow(self) -> bool:
        """True for a shadow made by :meth:`new_shadow` (not yet adopted)."""
        return self._checkpoint_key != self.name

    @property
    def slot(self) -> int:
        """The slot (0 or 1) this view writes to."""
        return self._slot

    @property
    def checkpoint_key(self) -> str:
        """The store checkpoint holding this view's position."""
        return self._checkpoint_key

    @property
    def store(self) -> ViewStore:
        """The views store whose environment holds the view."""
        return self._store

    def __repr__(self) -> str:
        kind = "shadow " if self.is_shadow else ""
        return f"LmdbView({kind}{self.name!r}, slot={self._slot}, position={self._position})"

    def _adopt_version(self, stored: tuple[int, int]) -> None:
        """Empty both slots, reset both checkpoints and record this version: one transaction."""
        dropped = self._store.checkpoint(self._checkpoint_key)
        self._slots.restart(self._version, (self._checkpoint_key, f"{self.name}:shadow"))
        if dropped:
            _log.warning(
                "view_version_changed",
                view=self.name,
                stored_version=stored[0],
                version=self._version,
                stored_key_layout=stored[1],
                key_layout=KEY_LAYOUT,
                dropped_position=dropped,
                action="replaying the log from 0",
            )

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(f"view {self.name!r} is closed")

    def position(self) -> int:
        """Return the last position committed (0 = none); cached, no transaction."""
        self._check_open()
        return self._position

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Apply ``events`` and set the checkpoint to ``up_to``, all in one write transaction.

        The read model computes against a read snapshot first; only writing its changes and the
        checkpoint takes the write transaction. If any event raises, nothing is written:
        neither rows nor checkpoint change.
        """
        self._check_open()
        check_up_to(self.name, events, up_to)
        current = self._position
        fresh = [record for record in events if record.position > current]
        target = max(current, up_to)
        if not fresh and target == current:
            return
        self._commit(self._model.apply, fresh, target, events=True)

    def load_rows(self, rows: Sequence[Any], up_to: int) -> None:
        """Write rows folded by a rebuild's :attr:`row_fold`; set the checkpoint to ``up_to``.

        Raises:
            TypeError: The read model has no ``row_fold``.
        """
        self._check_open()
        apply_row = row_writer(self.name, self._model)
        self._commit(apply_row, rows, max(self._position, up_to), events=False)

    def _commit(
        self,
        apply: Callable[[Storage, Any], None],
        items: Sequence[Any],
        target: int,
        *,
        events: bool,
    ) -> None:
        """Write ``items`` (events, or rows a rebuild folded) through ``apply``, at ``target``.

        A shadow keeps them in its rows in memory (see :mod:`views._lmdb_bulk`); a live view
        commits them with the checkpoint in one write transaction.
        """
        if self._bulk is not None:
            try:
                if events:
                    self._bulk.run(items, target)
                else:
                    self._bulk.load(items, target, apply)
            finally:
                self._position = self._bulk.position  # the last event applied, if one raised
            return
        db, key, store = self._slot_dbs[self._slot], self._checkpoint_key, self._store
        changes = compute(store, db, apply, items, self._cache)

        def run(txn: lmdb.Transaction) -> None:
            # Re-run from scratch by store.write after a map growth: it only writes through txn.
            commit(txn, db, changes.writes)
            store.set_checkpoint(key, target, txn)  # with the rows: one transaction

        self._write(changes, run)
        self._position = target

    def write_out(self) -> None:
        """Write a shadow's buffered rows to its slot, with its checkpoint, in one transaction.

        :meth:`adopt` calls it; a live view has nothing buffered (it commits every batch).
        """
        self._check_open()
        if self._bulk is not None:
            self._bulk.write_out()

    def written_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Write a shadow out, then yield (table, rows) of the rows it keeps decoded.

        They are then exactly the slot's committed rows (None: known absent). Nothing for a
        live view.
        """
        self.write_out()
        if self._bulk is not None:
            yield from self._bulk.decoded()

    def _write(self, changes: BatchChanges, run: Callable[[lmdb.Transaction], None]) -> None:
        """Write a computed batch with ``run``; keep its rows only once it is committed."""
        try:
            self._store.write(run)
        except BaseException:
            self._unknown_outcome()
            raise
        changes.keep_into()

    def _unknown_outcome(self) -> None:
        """After a failed write: trust LMDB alone again, rows and checkpoint.

        The failure may have come after the commit (a sync, a map growth's retry): the kept rows
        and the cached position may both be behind what LMDB holds.
        """
        self._cache.clear()
        try:
            self._position = self._store.checkpoint(self._checkpoint_key)
        except Exception as error:  # noqa: BLE001 - the write's own error is the one to raise
            _log.warning("view_checkpoint_unreadable", view=self.name, error=repr(error))

    def reapply(self, event: RecordedEvent) -> None:
        """Apply one (parked) event in its own transaction, without moving the checkpoint."""
        self._check_open()
        if self._bulk is not None:
            self._bulk.reapply(event)
            return
        db, cache = self._slot_dbs[self._slot], self._cache
        changes = compute(self._store, db, self._model.apply, [event], cache)
        self._write(changes, lambda txn: commit(txn, db, changes.writes))

    def validate(self, query: object) -> None:
        """Raise InvalidQuery if this view does not answer ``query`` or its read model refuses it.

        Reads no row: the engine calls it before it asks (or parks) a query.
        """
        check_query(self, self._model, query)

    def query(self, query: object) -> object:
        """Answer ``query`` in one short read transaction."""
        self._check_open()
        check_query(self, self._model, query)
        model, dbs = self._model, self._slot_dbs
        if self.is_shadow:
            # Its rows are buffered until written out. (A shadow has one user, the rebuild that
            # fills it: no query thread reaches it, so this runs on that thread.)
            self.write_out()
            db = dbs[self._slot]
            return self._store.read(lambda txn: model.query(LmdbStorage(txn, db), query))
        try:
            # The rows this view keeps decoded answer most point queries: no transaction.
            return model.query(CachedStorage(self._cache), query)
        except NeedsLmdb:
            pass
        # Read the live slot inside the same transaction, so a concurrent adopt is either wholly
        # visible or not at all.
        live = self._slots.live
        return self._store.read(lambda txn: model.query(LmdbStorage(txn, dbs[live(txn)]), query))

    def new_shadow(self) -> LmdbView:
        """Return an empty shadow in the other slot (emptied now) at position 0.

        A view has one shadow at a time: a new one discards the previous one's rows.

        Raises:
            TypeError: This view is itself a shadow.
        """
        self._check_open()
        if self.is_shadow:
            raise TypeError(f"view {self.name!r}: a shadow cannot have a shadow")
        other = 1 - self._slot
        self._slots.empty(other, f"{self.name}:shadow")
        _log.info("view_shadow_created", view=self.name, backend=self.backend, slot=other)
        return LmdbView(
            self._model,
            self._store,
            skip_unknown=self.skip_unknown,
            shadow_slot=other,
            bulk_rows=self._bulk_rows,
        )

    def adopt(self, shadow: View) -> None:
        """Make ``shadow``'s rows and position live in one transaction.

        The slot pointer flips, the checkpoint moves, the old slot is emptied; the shadow is
        closed.

        Raises:
            TypeError: ``shadow`` is not an open shadow made by this view's :meth:`new_shadow`.
        """
        self._check_open()
        if (
            not isinstance(shadow, LmdbView)
            or not shadow.is_shadow
            or shadow.store is not self._store
            or shadow.name != self.name
            or shadow.slot == self._slot
        ):
            raise TypeError(f"view {self.name!r} can only adopt its own open LMDB shadow")
        # Written out first (the flip below makes the slot live: every row must be in it), its
        # rows are then the new slot's committed ones: kept decoded once it is live, the first
        # batches after a rebuild read none of them from LMDB (and the shared fold shares).
        kept = list(shadow.written_rows())
        new_slot, position = shadow.slot, shadow.position()
        self._cache.clear()  # another slot's rows from now on
        self._slots.flip(new_slot, position, self._checkpoint_key, shadow.checkpoint_key)
        self._slot, self._position = new_slot, position
        for table, rows in kept:
            self._cache.keep(table, {}, rows, b"")
        shadow.close()
        _log.info("view_adopted", view=self.name, backend=self.backend, position=position)

    def clear(self) -> None:
        """Empty the view and reset its checkpoint to 0, in one transaction."""
        self._check_open()
        self._cache.clear()
        self._slots.empty(self._slot, self._checkpoint_key)
        self._position = 0
        if self._bulk is not None:
            self._bulk.clear()
        _log.info("view_cleared", view=self.name, backend=self.backend)

    def close(self) -> None:
        """Stop using the store (which stays open: it belongs to the engine). Idempotent."""
        self._closed = True
        # Let the kept rows go now, not with the last reference to the view: a caller's variable
        # naming a closed engine keeps its views alive, and 100k+ rows were then freed inside
        # whatever rebinds it (measured at 1M events: a reopen into the same variable took
        # 1.46 s without this, 1.17-1.20 s with it, 0.97 s once the variable was deleted first).
        self._cache.clear()
        if self._bulk is not None:
            self._bulk.clear()
