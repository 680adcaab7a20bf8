"""The event store facade: one LMDB environment per data directory.

It is used by one writer thread and several reader threads.

Concurrency (see :class:`~store._txns.Transactions`): write transactions are serialised by a
lock, every read runs in its own short read transaction, and growing the map waits for open
reads. Views keep their rows in their own environment (:class:`~store.ViewStore`), not here.
"""

from __future__ import annotations

import functools
import os
import pathlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, Self

import lmdb

from domain.errors import EngineError
from store import _append, _log, _upgrade
from store._bounds import KeyBounds
from store._codec import Codec
from store._commands import command_key
from store._env import ProcessLock, open_environment
from store._frames import LogFrames
from store._heads import HeadsCache
from store._logging import get_logger
from store._records import (
    CommandRecord,
    Committed,
    Durability,
    RecordedEvent,
    StreamAppend,
)
from store._tagged import decode_batch
from store._training import DictionaryTraining
from store._upkeep import StoreUpkeep

if TYPE_CHECKING:
    from store._env import Database, Txn

__all__ = ["EventStore"]

log = get_logger(__name__)

_TABLES: Final = (
    "log",
    "index",
    "streams",  # the stream index of layout 2: emptied by the upgrade to layout 3
    "heads",
    "commands",
    "snapshots",
    "checkpoints",
    "parked",
    "meta",
    "dicts",  # compression dictionaries of the log (store._frames)
)
_DUP_TABLES: Final = frozenset({"index"})  # opened DUPSORT | DUPFIXED (see store._log)


class EventStore(StoreUpkeep):
    """The event log, stream index, idempotency table, snapshots and view checkpoints.

    Open it with :meth:`open`; it is also a context manager. A stream is named by its
    aggregate type and id (``stream_type``, ``stream_id``): two types never share a stream.
    A data directory of the older layout (streams keyed by id alone) is upgraded at open
    (:mod:`store._upgrade`).

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
        super().__init__(path, env, _TABLES, dup_tables=_DUP_TABLES)
        self.codec = codec
        self.durability: Durability = durability
        self.stale_readers_cleared = stale_readers_cleared
        self._lock = lock
        _upgrade.upgrade_layout(self, self._dbs, codec)
        self._head = self.read(lambda txn: _log.last_position(txn, self._dbs["log"]))
        self.frames = LogFrames(lambda: self._dbs["dicts"], complete=True)
        self.read(self.frames.load)
        self._training = DictionaryTraining(self, self._dbs, self.frames)
        # Bounds of the idempotency and heads tables' keys: lookups above them need no read.
        self._bounds = KeyBounds(self.read, self._dbs)
        self._heads = HeadsCache()  # the heads this store's appends committed

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
            EngineError: The directory was written by a newer layout than this code knows.
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
        try:
            if not self._close_with(self._close_env):
                return
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

    # ------------------------------------------------------------ log

    def head(self) -> int:
        """Return the last committed position (0 if the log is empty)."""
        return self._head

    def stream_version(self, stream_id: str, *, stream_type: str) -> int:
        """Return the head version of a stream (0 if it does not exist).

        Raises:
            InvalidCommand: The stream type or id is not valid (empty, NUL, not UTF-8, too
                long).
        """
        key = _log.stream_key(stream_type, stream_id)
        if self._new_stream(key):
            return 0
        return self.read(lambda txn: _log.stream_version_in_txn(txn, self._dbs["heads"], key))

    def append_batch(self, appends: Sequence[StreamAppend]) -> list[Committed | EngineError]:
        """Append many streams' events in ONE write transaction.

        Per append, in order: a ``command_id`` already recorded (earlier, or earlier in this
        batch) gives ``Committed(duplicate=True)`` with the original figures if the fingerprint
        matches, else :class:`IdempotencyConflict`; an ``expected_version`` other than the
        stream's head (counting earlier appends of this batch) gives
        :class:`ConcurrencyConflict`; an invalid stream type or id or an unregistered event
        type gives
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
        frames = self.frames
        outcome: list[tuple[list[Committed | EngineError], int]] = []

        heads = self._heads
        tokens: list[int] = []

        def run(txn: Txn) -> None:
            outcome.clear()  # a retry after map growth starts from scratch
            tokens.append(heads.begin())
            outcome.append(
                _append.append_in_txn(txn, dbs, codec, frames, appends, self._head, now, heads)
            )

        # Raised before the write, never after: whatever becomes of the transaction (even a
        # failure reported after its commit), the bounds cover every key it may write.
        self._bounds.raise_for(appends)
        self.write(run)
        heads.settled(tokens[-1])
        results, head = outcome[0]
        self._head = head
        return results

    def read_stream(
        self, stream_id: str, from_version: int = 1, *, stream_type: str
    ) -> list[RecordedEvent]:
        """Return the events of the stream ``(stream_type, stream_id)`` from ``from_version`` on.

        Raises:
            InvalidCommand: The stream type or id is not valid.
            CorruptLog: A record cannot be decoded; ``.position`` names it.
        """
        key = _log.stream_key(stream_type, stream_id)
        if self._new_stream(key):
            return []
        dbs = self._dbs
        expand = self.frames.expand

        def fetch(txn: Txn) -> tuple[list[int], list[bytes]]:
            keys = _log.stream_positions(txn, dbs, key, from_version)
            pairs = txn.cursor(db=dbs["log"]).getmulti(keys)
            positions = [int.from_bytes(key, "big") for key, _ in pairs]
            return positions, expand(txn, [value for _, value in pairs], positions)

        positions, values = self.read(fetch)
        return self.codec.decode_at(positions, values)

    def read_all(
        self, from_position: int = 1, batch_size: int = 1000, *, tags: frozenset[str] | None = None
    ) -> Iterator[list[RecordedEvent]]:
        """Yield the log from ``from_position`` in batches, one short read txn per batch.

        A transaction is never held across a ``yield`` (it would pin pages and grow the file).
        The iteration ends at the head as of the last batch read.

        Args:
            from_position: The first position to read.
            batch_size: Records read per batch.
            tags: Only records of these tags are decoded and yielded (see
                :mod:`store._tagged`), each batch a :class:`ReadBatch` that knows the last
                position it read. None: every record, consecutive.

        Raises:
            CorruptLog: A record cannot be decoded; ``.position`` names it.
            EngineClosed: The store is closed.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        log_db = self._dbs["log"]
        position = max(from_position, 1)
        while True:
            # The head is read before the txn begins: all of it is in the txn's snapshot.
            values = self.read(
                functools.partial(
                    _read_values, log_db, self.frames, position, batch_size, self._head
                )
            )
            if not values:
                return
            yield decode_batch(self.codec, position, values, tags)
            position += len(values)
            if len(values) < batch_size:
                return

    def read_raw(self, from_position: int = 1, limit: int = 1000) -> list[tuple[int, bytes]]:
        """Return up to ``limit`` undecoded ``(position, envelope)`` pairs from ``from_position``.

        Compressed records come back expanded: each value is a msgpack envelope
        (:mod:`store._codec`).
        """
        start = max(from_position, 1)
        log_db = self._dbs["log"]
        head = self._head
        frames = self.frames
        values = self.read(
            lambda txn: _log.read_log_values(txn, log_db, frames, start, limit, head)
        )
        return [(start + offset, value) for offset, value in enumerate(values)]

    def lookup_command(self, command_id: str) -> CommandRecord | None:
        """Return what ``command_id`` committed, or None if it was never recorded.

        An id above every key the table may hold (time-ordered ids, as ``domain.ids.new_id``
        makes, nearly always are) is answered without reading LMDB (see :mod:`store._bounds`).
        """
        try:
            # NUL is refused in ids: the lookup below says so (b"" is never new).
            key = b"" if "\x00" in command_id else command_key(command_id)
        except UnicodeEncodeError:
            key = b""  # invalid: the lookup below refuses it as it always did
        if self._bounds.command_is_new(key) and len(key) <= _log.MAX_KEY_BYTES:
            self._check_open()
            return None
        dbs = self._dbs
        frames = self.frames
        return self.read(lambda txn: _log.lookup_command_in_txn(txn, dbs, frames, command_id))


def _read_values(  # noqa: PLR0917 - a partial's arguments, in order
    log_db: Database, frames: LogFrames, start: int, limit: int, head: int, txn: Txn
) -> list[bytes]:
    return _log.read_log_values(txn, log_db, frames, start, limit, head)
