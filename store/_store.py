"""The event store facade: one LMDB environment per data directory.

It is used by one writer thread and several reader threads.

Concurrency: write transactions are serialised by a lock (one writer at a time, also for views'
``write``); every read runs in its own short read transaction (py-lmdb transactions must not be
shared between threads) registered with a :class:`~store._env.ResizeGate`, so growing the map
never happens while any transaction of this process is open.
"""

from __future__ import annotations

import functools
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final, Self, TypeVar

import lmdb
import structlog

from domain.errors import EngineClosed, EngineError
from store import _checkpoints, _log, _snapshots
from store._codec import Codec
from store._env import ProcessLock, ResizeGate, open_environment
from store._records import (
    CommandRecord,
    Committed,
    Durability,
    ParkedEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)

if TYPE_CHECKING:
    from store._env import AnyTxn, Database, Txn

__all__ = ["EventStore"]

T = TypeVar("T")

log = structlog.get_logger(__name__)

_TABLES: Final = ("log", "streams", "heads", "commands", "snapshots", "checkpoints", "parked")
_DATA_FILE: Final = "data.mdb"


class EventStore:
    """The event log, stream index, idempotency table, snapshots and view checkpoints.

    Open it with :meth:`open`; it is also a context manager.

    Attributes:
        path: The data directory.
        durability: ``"sync"`` (fsync per commit) or ``"async"`` (survives a process crash).
        codec: The codec that encodes and decodes events.
        env: The LMDB environment, for views' own named databases (use :meth:`open_db`,
            :meth:`write` and :meth:`read` rather than raw transactions: they handle map growth).
        stale_readers_cleared: Reader slots of dead processes cleared at open.
    """

    def __init__(
        self,
        path: pathlib.Path,
        *,
        codec: Codec,
        durability: Durability,
        env: lmdb.Environment,
        lock: ProcessLock,
        stale_readers_cleared: int,
    ) -> None:
        self.path = path
        self.codec = codec
        self.durability: Durability = durability
        self.env = env
        self.stale_readers_cleared = stale_readers_cleared
        self._lock = lock
        self._write_lock = threading.Lock()
        self._gate = ResizeGate()
        self._closed = False
        self._dbs: dict[str, Database] = {
            name: env.open_db(name.encode(), create=True) for name in _TABLES
        }
        self._view_dbs: dict[str, Database] = {}
        self._head = self.read(lambda txn: _log.last_position(txn, self._dbs["log"]))

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        codec: Codec,
        durability: Durability = "sync",
        map_size: int = 64 * 2**20,
        max_readers: int = 126,
    ) -> EventStore:
        """Open (creating if needed) the store in the data directory ``path``.

        Args:
            path: The data directory; created if missing.
            codec: The codec holding every event type the log contains.
            durability: ``"sync"``: a commit survives power loss; ``"async"``: it survives a
                crash of this process, the last commits may be lost if the OS crashes.
            map_size: Initial LMDB map size in bytes; it doubles by itself when full.
            max_readers: LMDB reader slots (concurrent read transactions of all processes).

        Raises:
            LogLocked: Another process, or this one, already holds the directory.
            ValueError: ``durability`` is neither ``"sync"`` nor ``"async"``.
        """
        if durability not in {"sync", "async"}:
            raise ValueError(f"durability must be 'sync' or 'async', got {durability!r}")
        directory = pathlib.Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        lock = ProcessLock(directory)
        try:
            env, stale = open_environment(
                directory, sync=durability == "sync", map_size=map_size, max_readers=max_readers
            )
            try:
                store = cls(
                    directory,
                    codec=codec,
                    durability=durability,
                    env=env,
                    lock=lock,
                    stale_readers_cleared=stale,
                )
            except BaseException:
                env.close()
                raise
        except BaseException:
            lock.release()
            raise
        log.info("store_opened", path=str(directory), durability=durability, head=store._head)
        return store

    def close(self) -> None:
        """Flush (in async mode), close LMDB and release the lock. Idempotent."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            try:
                # Waits for open reads: closing under a live transaction would invalidate it.
                self._gate.exclusively(self._close_env)
            finally:
                self._lock.release()
        log.info("store_closed", path=str(self.path), head=self._head)

    def _close_env(self) -> None:
        try:
            if self.durability == "async":
                self.env.sync(force=True)
        finally:
            self.env.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(f"the event store at {self.path} is closed")

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
            while True:
                txn = self.env.begin(write=True)
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

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a short read transaction of its own and return its result.

        Raises:
            EngineClosed: The store is closed.
        """
        gate = self._gate
        gate.enter()
        try:
            self._check_open()
            txn = self.env.begin()
            try:
                return fn(txn)
            finally:
                txn.abort()
        finally:
            gate.leave()

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
        return (self.path / _DATA_FILE).stat().st_size

    # ------------------------------------------------------------ log

    def head(self) -> int:
        """Return the last committed position (0 if the log is empty)."""
        return self._head

    def stream_version(self, stream_id: str) -> int:
        """Return the head version of a stream (0 if it does not exist).

        Raises:
            InvalidCommand: The stream id is not valid (empty, NUL, not UTF-8, too long).
        """
        key = _log.validate_stream_id(stream_id)
        return self.read(lambda txn: _log.stream_version_in_txn(txn, self._dbs["heads"], key))

    def append_batch(self, appends: Sequence[StreamAppend]) -> list[Committed | EngineError]:
        """Append many streams' events in ONE write transaction.

        Per append, in order: a ``command_id`` already recorded (earlier, or earlier in this
        batch) gives ``Committed(duplicate=True)`` with the original figures if the fingerprint
        matches, else :class:`IdempotencyConflict`; an ``expected_version`` other than the
        stream's head (counting earlier appends of this batch) gives
        :class:`ConcurrencyConflict`; an invalid stream id or an unregistered event type gives
        :class:`InvalidCommand`. A failing append fails alone; the rest commit.

        Returns:
            One :class:`Committed` or error per append, in order.

        Raises:
            EngineClosed: The store is closed.
            lmdb.Error: The transaction failed; nothing of the batch was written.
            CommitFailed: The log refused an append-mode write; nothing was written.
        """
        if not appends:
            return []
        now = time.time_ns()
        dbs = self._dbs
        codec = self.codec
        outcome: list[tuple[list[Committed | EngineError], int]] = []

        def run(txn: Txn) -> None:
            outcome.clear()  # a retry after map growth starts from scratch
            outcome.append(_log.append_in_txn(txn, dbs, codec, appends, self._head, now))

        self.write(run)
        results, head = outcome[0]
        self._head = head
        return results

    def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        """Return a stream's events from ``from_version`` on, in version order.

        Raises:
            InvalidCommand: The stream id is not valid.
            CorruptLog: A record cannot be decoded; ``.position`` names it.
        """
        key = _log.validate_stream_id(stream_id)
        dbs = self._dbs

        def fetch(txn: Txn) -> tuple[list[bytes], list[bytes]]:
            positions = _log.stream_positions(txn, dbs, key, from_version)
            pairs = txn.cursor(db=dbs["log"]).getmulti(positions)
            return [key for key, _ in pairs], [value for _, value in pairs]

        positions, values = self.read(fetch)
        return self.codec.decode_at([int.from_bytes(p, "big") for p in positions], values)

    def read_all(
        self, from_position: int = 1, batch_size: int = 1000
    ) -> Iterator[list[RecordedEvent]]:
        """Yield the log from ``from_position`` in batches, one short read txn per batch.

        A transaction is never held across a ``yield`` (it would pin pages and grow the file).
        The iteration ends at the head as of the last batch read.

        Raises:
            CorruptLog: A record cannot be decoded; ``.position`` names it.
            EngineClosed: The store is closed.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        log_db = self._dbs["log"]
        decode = self.codec.decode_many
        position = max(from_position, 1)
        while True:
            # The head is read before the txn begins: all of it is in the txn's snapshot.
            values = self.read(
                functools.partial(_read_values, log_db, position, batch_size, self._head)
            )
            if not values:
                return
            yield decode(position, values)
            position += len(values)
            if len(values) < batch_size:
                return

    def read_raw(self, from_position: int = 1, limit: int = 1000) -> list[tuple[int, bytes]]:
        """Return up to ``limit`` undecoded ``(position, value)`` pairs from ``from_position``."""
        start = max(from_position, 1)
        log_db = self._dbs["log"]
        head = self._head
        values = self.read(lambda txn: _log.read_log_values(txn, log_db, start, limit, head))
        return [(start + offset, value) for offset, value in enumerate(values)]

    def lookup_command(self, command_id: str) -> CommandRecord | None:
        """Return what ``command_id`` committed, or None if it was never recorded."""
        db = self._dbs["commands"]
        return self.read(lambda txn: _log.lookup_command_in_txn(txn, db, command_id))

    # ------------------------------------------------------------ snapshots

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` as the stream's latest, unless a newer one is stored."""
        db = self._dbs["snapshots"]
        self.write(lambda txn: _snapshots.save_snapshot_in_txn(txn, db, snapshot))

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """Return the stream's latest snapshot, or None."""
        db = self._dbs["snapshots"]
        return self.read(lambda txn: _snapshots.load_snapshot_in_txn(txn, db, stream_id))

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

    # ------------------------------------------------------------ views' own databases

    def open_db(self, name: str) -> Database:
        """Return the named database ``name`` (e.g. ``"view:orders"``), creating it once.

        Raises:
            ValueError: ``name`` is one of the store's own tables or empty.
        """
        handle = self._view_dbs.get(name)
        if handle is not None:
            return handle
        if not name or name in _TABLES:
            raise ValueError(f"{name!r} is reserved or empty; use e.g. 'view:<name>'")
        with self._write_lock:
            self._check_open()
            handle = self._view_dbs.get(name)
            if handle is None:
                handle = self._open_db_growing(name)
                self._view_dbs[name] = handle
        return handle

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


def _read_values(log_db: Database, start: int, limit: int, head: int, txn: Txn) -> list[bytes]:
    return _log.read_log_values(txn, log_db, start, limit, head)
