"""Read-only access to an environment another process writes: the log, or the views.

LMDB lets any number of processes read an environment while one writes it. A follower opens it
``readonly`` *with* LMDB's lock file (``lock=True``): its read transactions take reader slots
there, so the writer never reuses a page a follower still reads. It never takes the engine's
process lock (:class:`~store._env.ProcessLock`): it writes nothing.

Map growth. The writer doubles its map when it fills; a follower whose map is then too small gets
``MapResizedError`` when it begins a transaction. :class:`ReadOnlyEnv` then adopts the new size
(``set_mapsize(0)``), once none of its own transactions is open (the same
:class:`~store._env.ResizeGate` as the stores), and begins again.

Do not open a follower on an environment this same process already has open (LMDB forbids two
handles on one environment in one process: closing one drops the other's locks).
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

import lmdb

from domain.errors import EngineClosed
from store import _checkpoints, _log
from store._codec import Codec
from store._env import ResizeGate
from store._frames import LogFrames
from store._logging import get_logger
from store._records import ParkedEvent, RecordedEvent
from store._tagged import decode_batch

if TYPE_CHECKING:
    from store._env import Database, Txn

__all__ = ["LogFollower", "ProjectionLog", "ReadOnlyEnv"]

T = TypeVar("T")

log = get_logger(__name__)

_MAX_DBS: Final = 256


class ProjectionLog(Protocol):
    """What projectors need of the log: the :class:`~store.EventStore`, or a follower of it."""

    def head(self) -> int:
        """Return the last committed position."""
        ...

    def read_all(
        self, from_position: int = 1, batch_size: int = 1000, *, tags: frozenset[str] | None = None
    ) -> Iterator[list[RecordedEvent]]:
        """Yield decoded records from ``from_position`` in batches (only ``tags``' if given)."""
        ...

    def park(self, parked: ParkedEvent) -> None:
        """Record a poison event of a view."""
        ...

    def parked(self, view: str | None = None) -> list[ParkedEvent]:
        """Return the parked events of ``view`` (or of all)."""
        ...

    def unpark(self, view: str, position: int) -> bool:
        """Forget a parked event; return whether it was parked."""
        ...


class ReadOnlyEnv:
    """An LMDB environment opened read-only beside the process that writes it.

    Args:
        path: The environment's directory (must exist and hold ``data.mdb``).
        max_readers: Reader slots; must not exceed the writer's (LMDB fixes it at creation).

    Raises:
        lmdb.Error: The directory holds no environment.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_readers: int = 126) -> None:
        self.path = pathlib.Path(path)
        self.env = lmdb.open(
            str(self.path),
            readonly=True,
            lock=True,  # reader slots in lock.mdb: the writer keeps our pages alive
            max_dbs=_MAX_DBS,
            max_readers=max_readers,
            max_spare_txns=8,
            subdir=True,
        )
        try:
            # Slots of killed followers (a projection process's kill -9) would pin old pages.
            self.env.reader_check()
        except BaseException:
            self.env.close()
            raise
        self._gate = ResizeGate()
        self._dbs: dict[str, Database] = {}
        self._closed = False

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a short read transaction, adopting the writer's map growth first.

        Raises:
            EngineClosed: The follower is closed.
        """
        while True:
            gate = self._gate
            gate.enter()
            try:
                if self._closed:
                    raise EngineClosed(f"the follower of {self.path} is closed")
                try:
                    txn = self.env.begin()
                except lmdb.MapResizedError:
                    pass  # adopted below, once this thread no longer counts as a reader
                else:
                    try:
                        return fn(txn)
                    finally:
                        txn.abort()
            finally:
                gate.leave()
            self._adopt_map_size()

    def _adopt_map_size(self) -> None:
        def adopt() -> None:
            if not self._closed:
                self.env.set_mapsize(0)  # 0: the size the writer recorded

        self._gate.exclusively(adopt)
        log.info("follower_map_adopted", path=str(self.path), map_size=self.env.info()["map_size"])

    def db(self, name: str) -> Database | None:
        """Return the named database ``name``, or None while the writer has not created it."""
        handle = self._dbs.get(name)
        if handle is not None:
            return handle

        found: list[Database] = []
        resized: list[bool] = []

        def open_handle() -> None:
            if self._closed:
                raise EngineClosed(f"the follower of {self.path} is closed")
            try:
                # py-lmdb opens it in a read transaction of its own and keeps the handle (one
                # opened in a transaction of ours would die with it).
                found.append(self.env.open_db(name.encode(), create=False))
            except lmdb.NotFoundError:
                pass
            except lmdb.MapResizedError:
                resized.append(True)

        while True:
            # LMDB forbids opening a handle while another transaction of the process is open:
            # a handle the projection process opened lazily from one thread while another read
            # kept showing the table as it was then (`dicts` empty, its records' dictionary
            # "missing": ~1 run in 15 under load). So it is opened once this process's reads
            # are done; a thread inside a read of its own cannot wait for that, and opens it
            # as before.
            if self._gate.held_here():
                self._gate.enter()
                try:
                    open_handle()
                finally:
                    self._gate.leave()
            else:
                self._gate.exclusively(open_handle)
            if not resized:
                break
            resized.clear()
            self._adopt_map_size()
        if found:
            self._dbs[name] = found[0]
            return found[0]
        return None

    def checkpoint(self, view: str) -> int:
        """Return the checkpoint ``view`` in the ``checkpoints`` table (0 if none)."""
        db = self.db("checkpoints")
        if db is None:
            return 0
        return self.read(lambda txn: _checkpoints.checkpoint_in_txn(txn, db, view))

    def close(self) -> None:
        """Close the environment once no read is open. Idempotent."""
        if self._closed:
            return

        def final() -> None:
            self._closed = True
            self.env.close()

        self._gate.exclusively(final)


class LogFollower(ReadOnlyEnv):
    """The event log of a data directory, read by another process while the engine writes it.

    What a projection process reads: the head (read live from LMDB: the writer's cached head is
    in another process), the records decoded by ``codec``, and the parked events.

    Args:
        path: The data directory of a live (or closed) engine.
        codec: The codec that decodes its events (the engine's, or one registering the same
            types and upcasters).
    """

    def __init__(self, path: str | os.PathLike[str], *, codec: Codec) -> None:
        super().__init__(path)
        self.codec = codec
        # Dictionaries are read when a frame first names one (the writer adds them over time);
        # read_all opens the table's handle before each batch's transaction (see db()).
        self.frames = LogFrames(lambda: self._dbs.get("dicts"))

    def head(self) -> int:
        """Return the last committed position, read from LMDB now."""
        db = self.db("log")
        if db is None:
            return 0
        return self.read(lambda txn: _log.last_position(txn, db))

    def read_all(
        self, from_position: int = 1, batch_size: int = 1000, *, tags: frozenset[str] | None = None
    ) -> Iterator[list[RecordedEvent]]:
        """Yield the log from ``from_position`` in batches (as :meth:`EventStore.read_all`).

        Raises:
            CorruptLog: A record cannot be decoded; ``.position`` names it.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        db = self.db("log")
        if db is None:
            return
        position = max(from_position, 1)
        head = self.head()
        while position <= head:
            self.db("dicts")  # see __init__: before the transaction
            values = self.read(
                functools.partial(_read_values, db, self.frames, position, batch_size, head)
            )
            if not values:
                return
            yield decode_batch(self.codec, position, values, tags)
            position += len(values)
            if len(values) < batch_size:
                return

    def parked(self, view: str | None = None) -> list[ParkedEvent]:
        """Return the parked events of ``view`` (or of every view), as the engine recorded them."""
        db = self.db("parked")
        if db is None:
            return []
        return self.read(lambda txn: _checkpoints.parked_in_txn(txn, db, view))


def _read_values(  # noqa: PLR0917 - a partial's arguments, in order
    db: Database, frames: LogFrames, start: int, limit: int, head: int, txn: Txn
) -> list[bytes]:
    return _log.read_log_values(txn, db, frames, start, limit, head)
