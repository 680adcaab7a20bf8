"""Transactions over one LMDB environment: what the event store and the views store share.

Concurrency: write transactions are serialised by a lock (one writer at a time); every read runs
in its own short read transaction (py-lmdb transactions must not be shared between threads)
registered with a :class:`~store._env.ResizeGate`, so growing the map never happens while any
transaction of this process is open. Named databases for views, and view checkpoints, live here
too: both stores offer them.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, TypeVar

import lmdb

from domain.errors import EngineClosed
from store import _checkpoints
from store._env import ResizeGate
from store._logging import get_logger

if TYPE_CHECKING:
    from store._env import AnyTxn, Database, Txn

__all__ = ["DATA_FILE", "Transactions"]

T = TypeVar("T")

log = get_logger(__name__)

DATA_FILE: Final = "data.mdb"


class Transactions:
    """Read and write transactions, map growth and named databases over one environment.

    Args:
        path: The environment's directory (for messages and the file size).
        env: The open LMDB environment.
        tables: Names of the owner's own tables (opened now; never handed out by
            :meth:`open_db`). Must include ``"checkpoints"``.
        dup_tables: Names among ``tables`` opened ``DUPSORT | DUPFIXED`` (many fixed-size values
            per key, packed).
    """

    def __init__(
        self,
        path: pathlib.Path,
        env: lmdb.Environment,
        tables: Iterable[str],
        dup_tables: frozenset[str] = frozenset(),
    ) -> None:
        self.path = path
        self.env = env
        self._write_lock = threading.Lock()
        self._gate = ResizeGate()
        self._closed = False
        self._tables = tuple(tables)
        self._dbs: dict[str, Database] = {
            name: env.open_db(
                name.encode(), create=True, dupsort=name in dup_tables, dupfixed=name in dup_tables
            )
            for name in self._tables
        }
        self._view_dbs: dict[str, Database] = {}

    @property
    def closed(self) -> bool:
        """True once the environment was closed."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(f"the store at {self.path} is closed")

    def _close_with(self, final: Callable[[], None]) -> bool:
        """Mark closed and run ``final`` once no read is open; False if it was closed already."""
        with self._write_lock:
            if self._closed:
                return False
            self._closed = True
            # Waits for open reads: closing under a live transaction would invalidate it.
            self._gate.exclusively(final)
            return True

    # ------------------------------------------------------------ transactions

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in one write transaction and commit it.

        On a full map the transaction is aborted, the map doubled and ``fn`` run again, so
        ``fn`` must be safe to re-run. Any other exception aborts and propagates.

        Raises:
            EngineClosed: The store is closed.
        """
        with self._write_lock:
            self._check_open()
            self._before_write()
            while True:
                try:
                    txn = self.env.begin(write=True)
                except lmdb.MapResizedError:
                    self._gate.resize(self.env, 0)  # grown by another process: adopt, retry
                    continue
                try:
                    result = fn(txn)
                    txn.commit()
                except lmdb.MapFullError:
                    self._abort(txn)
                    self._grow()
                    continue
                except BaseException:
                    self._abort(txn)
                    raise
                return result

    def _before_write(self) -> None:
        """Hook run under the write lock before every write transaction (default: nothing)."""

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a short read transaction of its own and return its result.

        Raises:
            EngineClosed: The store is closed.
        """
        gate = self._gate
        while True:
            gate.enter()
            try:
                self._check_open()
                try:
                    txn = self.env.begin()
                except lmdb.MapResizedError:
                    # Another process (a projection process) grew the map: adopt its size below,
                    # once this thread no longer counts as a reader.
                    pass
                else:
                    try:
                        return fn(txn)
                    finally:
                        txn.abort()
            finally:
                gate.leave()
            self._adopt_map_size()

    def _adopt_map_size(self) -> None:
        """Take the map size another process grew the environment to (``set_mapsize(0)``)."""
        with self._write_lock:
            self._check_open()
            self._gate.resize(self.env, 0)
        log.info("map_adopted", path=str(self.path), map_size=self.map_size)

    def _abort(self, txn: Txn) -> None:
        # py-lmdb 3.0 lets a write txn's abort wait until no other thread is inside an LMDB
        # call; with busy reader threads that can starve forever (seen here). Draining the
        # readers first makes the abort immediate. Aborts are rare, so this costs nothing.
        self._gate.exclusively(txn.abort)

    def _grow(self) -> None:
        # Called by the writer with no write transaction open; the gate waits for readers.
        old: int = self.env.info()["map_size"]
        started = time.perf_counter()
        self._gate.resize(self.env, old * 2)
        log.info(
            "map_grown",
            path=str(self.path),
            old_size=old,
            new_size=old * 2,
            seconds=round(time.perf_counter() - started, 6),
        )

    @property
    def map_size(self) -> int:
        """The current LMDB map size in bytes."""
        size: int = self.env.info()["map_size"]
        return size

    def file_size(self) -> int:
        """Return the size of the data file in bytes."""
        return (self.path / DATA_FILE).stat().st_size

    # ------------------------------------------------------------ checkpoints

    def checkpoint(self, view: str) -> int:
        """Return the last position ``view`` has applied (0 if none)."""
        db = self._dbs["checkpoints"]
        return self.read(lambda txn: _checkpoints.checkpoint_in_txn(txn, db, view))

    def set_checkpoint(self, view: str, position: int, txn: AnyTxn | None = None) -> None:
        """Set ``view``'s checkpoint, inside ``txn`` if given (with the view's own rows)."""
        db = self._dbs["checkpoints"]
        if txn is not None:
            _checkpoints.set_checkpoint_in_txn(txn, db, view, position)
            return
        self.write(lambda wtxn: _checkpoints.set_checkpoint_in_txn(wtxn, db, view, position))

    def checkpoints(self) -> dict[str, int]:
        """Return every checkpoint by view name."""
        db = self._dbs["checkpoints"]
        return self.read(lambda txn: _checkpoints.all_checkpoints_in_txn(txn, db))

    # ------------------------------------------------------------ views' own databases

    def open_db(self, name: str) -> Database:
        """Return the named database ``name`` (e.g. ``"view:orders"``), creating it once.

        Raises:
            ValueError: ``name`` is one of the store's own tables or empty.
        """
        handle = self._view_dbs.get(name)
        if handle is not None:
            return handle
        if not name or name in self._tables:
            raise ValueError(f"{name!r} is reserved or empty; use e.g. 'view:<name>'")
        with self._write_lock:
            self._check_open()
            handle = self._view_dbs.get(name)
            if handle is None:
                handle = self._open_db_growing(name)
                self._view_dbs[name] = handle
        return handle

    def db(self, name: str) -> Database:
        """Return the named database ``name``, creating it once (as :meth:`open_db`)."""
        return self.open_db(name)

    def _open_db_growing(self, name: str) -> Database:
        while True:
            try:
                return self.env.open_db(name.encode(), create=True)
            except lmdb.MapFullError:
                self._grow()

    def drop_db(self, name: str, delete: bool = True) -> None:
        """Empty the named database; with ``delete`` also remove it."""
        handle = self.open_db(name)
        self.write(lambda txn: txn.drop(handle, delete=delete))
        if delete:
            with self._write_lock:
                self._view_dbs.pop(name, None)
