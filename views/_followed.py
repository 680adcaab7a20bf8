"""An LMDB view another process keeps current: this process only reads it.

In projection-process mode (``Engine.open(projection="process")``) the engine's process answers
queries of its LMDB views while a projection process writes them; a :class:`~views.ViewReader`
does the same in any other process. Both see the view through a :class:`FollowedView`: the same
layout as :class:`~views.LmdbView` (two slots, a slot pointer, a checkpoint, see
:mod:`views._lmdb`), read in one short read transaction per query, and a position read from the
checkpoint the writer committed with the rows (never a cached number: the writer is elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import lmdb

from domain.errors import InvalidView
from views._lmdb_keys import KEY_LAYOUT, UNREADABLE, parse_version_record
from views._lmdb_slots import live_slot
from views._lmdb_storage import SLOTS_DB, VERSIONS_DB, Db, LmdbStorage
from views._read_only import ReadOnlyView
from views._view import Backend, ReadModel, check_query, model_version

__all__ = ["FollowedView", "ViewSource"]

T = TypeVar("T")


class ViewSource(Protocol):
    """The views environment as a reader sees it: a :class:`~store.ViewStore` or a follower."""

    def read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` in a short read transaction."""
        ...

    def checkpoint(self, view: str) -> int:
        """Return the checkpoint ``view`` (0 if none)."""
        ...

    def db(self, name: str) -> Any:
        """Return the named database ``name``, or None if it does not exist."""
        ...


class FollowedView(ReadOnlyView):
    """A read model's LMDB view, read here and written by another process.

    It answers ``query`` and ``position`` (see :class:`~views.View`); every method that would
    write raises ``TypeError``: the projection process owns the view.

    Args:
        model: The read model (the same one the writing process applies).
        source: The views environment.

    Raises:
        InvalidView: The environment holds no such view (no engine kept it in LMDB yet).
    """

    backend: Backend = "lmdb"

    def __init__(self, model: ReadModel, source: ViewSource) -> None:
        super().__init__(model)
        self._source = source
        self._name_key = model.name.encode()
        self._version = model_version(model)
        self._versions_db: Db | None = None
        slots = source.db(SLOTS_DB)
        dbs = (source.db(f"view:{model.name}:0"), source.db(f"view:{model.name}:1"))
        if slots is None or dbs[0] is None or dbs[1] is None:
            raise InvalidView(
                repr(model.name),
                f"is not in the views environment at {getattr(source, 'path', '?')}; open an "
                "engine with this read model kept in LMDB (view_backends) first",
            )
        self._slots_db = slots
        self._dbs = dbs

    def _versions(self) -> Db | None:
        # Looked up (outside any transaction) until it exists: a writer creates it at open.
        if self._versions_db is None:
            self._versions_db = self._source.db(VERSIONS_DB)
        return self._versions_db

    def _stored_version(self, txn: lmdb.Transaction, versions: Db | None) -> tuple[int, int]:
        raw = None if versions is None else txn.get(self._name_key, db=versions)
        return parse_version_record(raw)

    def _other_version(self, stored: tuple[int, int]) -> InvalidView:
        version, layout = stored
        written = f"read-model version {version}, this is version {self._version}"
        if stored == UNREADABLE:
            written = "a version this build cannot read (its record is damaged or newer)"
        elif version == self._version:
            written = f"key layout {layout}, this reads layout {KEY_LAYOUT}"
        return InvalidView(
            repr(self.name),
            f"its rows were written by {written}; the writing process replays the view when it "
            "opens with this version: ask again after that",
        )

    def position(self) -> int:
        """Return the checkpoint the writing process committed last (one read transaction).

        0 while the rows are another read-model version's: ``after=`` waits for the writer.
        """
        self._check_open()
        versions = self._versions()
        stored = self._source.read(lambda txn: self._stored_version(txn, versions))
        if stored != (self._version, KEY_LAYOUT):
            return 0
        return self._source.checkpoint(self.name)

    def query(self, query: object) -> object:
        """Answer ``query`` from the live slot, in one short read transaction."""
        self._check_open()
        check_query(self, self._model, query)
        model, dbs, slots, key = self._model, self._dbs, self._slots_db, self._name_key
        versions = self._versions()

        def answer(txn: lmdb.Transaction) -> object:
            # The slot pointer is read in the same transaction as the rows: a rebuild's swap in
            # the writing process is seen whole or not at all.
            stored = self._stored_version(txn, versions)
            if stored != (self._version, KEY_LAYOUT):
                raise self._other_version(stored)  # its rows would be misread
            return model.query(LmdbStorage(txn, dbs[live_slot(txn, slots, key)]), query)

        return self._source.read(answer)
