"""The LMDB environment of a data directory: exclusive process lock, opening, map growth.

LMDB itself lets a second process (or a second open in the same process) write to the same
environment, which corrupts it, so the store takes its own exclusive ``flock`` on a separate
lock file first. ``flock`` locks belong to an open file description: a second open in the same
process conflicts too, and the kernel drops the lock when the holder dies, so a stale lock file
is simply taken over.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import lmdb

from domain.errors import LogLocked
from store._logging import get_logger

__all__ = [
    "LOCK_FILE",
    "AnyTxn",
    "Database",
    "ProcessLock",
    "ResizeGate",
    "Txn",
    "open_environment",
]

if TYPE_CHECKING:
    # py-lmdb's stubs name the database handle type privately; reads never use buffers=True.
    Database: TypeAlias = lmdb._Database  # noqa: SLF001 - the stubs' only name for it
    Txn: TypeAlias = lmdb.Transaction[bytes]
    # What callers may hand in (their own transactions, whatever their buffer mode).
    AnyTxn: TypeAlias = lmdb.Transaction[bytes | memoryview]

log = get_logger(__name__)

LOCK_FILE: Final = "engine.lock"
# Named databases of the store itself plus room for views' own ones.
MAX_DBS: Final = 256
# A holder writes its pid right after taking the lock; a loser that reads in between sees an
# empty file or a dead pid, so it re-reads for up to this long before reporting what it has.
_PID_WAIT_SECONDS: Final = 2.0
_PID_POLL_SECONDS: Final = 0.005


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _read_pid(fd: int) -> int:
    data = os.pread(fd, 32, 0)
    try:
        return int(data.decode("ascii").strip() or "0")
    except (UnicodeDecodeError, ValueError):
        return 0


def _flock_or_raise(fd: int, directory: pathlib.Path) -> None:
    deadline = time.monotonic() + _PID_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}:
                raise
        else:
            return
        holder = _read_pid(fd)
        if _alive(holder) or time.monotonic() >= deadline:
            raise LogLocked(str(directory), holder)
        # Between the holder's flock and its pid write: look again shortly.
        threading.Event().wait(_PID_POLL_SECONDS)


class ProcessLock:
    """An exclusive, non-blocking ``flock`` on ``<dir>/engine.lock`` holding the owner's pid.

    Args:
        directory: The data directory (must exist).

    Raises:
        LogLocked: Another process, or another open in this process, holds the directory.
    """

    _held: Final[set[pathlib.Path]] = set()
    _held_guard: Final = threading.Lock()

    def __init__(self, directory: pathlib.Path) -> None:
        self.path = directory / LOCK_FILE
        self._directory = directory.resolve()
        self._fd = -1
        with ProcessLock._held_guard:
            # Known up front in this process: report our own pid without touching the file.
            if self._directory in ProcessLock._held:
                raise LogLocked(str(directory), os.getpid())
            self._acquire(directory)
            ProcessLock._held.add(self._directory)

    def _acquire(self, directory: pathlib.Path) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _flock_or_raise(fd, directory)
            previous = _read_pid(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if previous and previous != os.getpid():
            log.info("stale_lock_taken_over", path=str(directory), previous_pid=previous)

    @classmethod
    def held_here(cls, directory: pathlib.Path) -> bool:
        """Return whether this process holds ``directory``'s lock (an engine open here)."""
        with cls._held_guard:
            return directory.resolve() in cls._held

    def release(self) -> None:
        """Release the lock (idempotent). The file stays; its pid is only advisory."""
        with ProcessLock._held_guard:
            if self._fd < 0:
                return
            fd, self._fd = self._fd, -1
            try:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
                ProcessLock._held.discard(self._directory)


class ResizeGate:
    """Keeps ``set_mapsize`` away from open transactions, cheaply for readers.

    LMDB may only change the map size while this process has no transaction open. Readers
    register around each (short) read transaction; the writer, before resizing, stops new readers
    and waits for the open ones to finish. Re-entrant per thread, so a read inside a read never
    waits for a resize that waits for it.
    """

    def __init__(self) -> None:
        # Readers take the bare C lock (a Condition's own __enter__ is Python code, and this runs
        # around every read of the write path); the condition shares it for the rare waits.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._readers = 0
        self._resizing = False
        self._local = threading.local()

    def enter(self) -> None:
        """Register a reader; waits while a resize is in progress."""
        local = self._local
        depth: int = getattr(local, "depth", 0)
        local.depth = depth + 1
        with self._lock:
            if depth == 0:
                while self._resizing:
                    self._cond.wait()
            self._readers += 1

    def leave(self) -> None:
        """Unregister a reader."""
        self._local.depth -= 1
        with self._lock:
            self._readers -= 1
            if self._readers == 0 and self._resizing:
                self._cond.notify_all()

    def held_here(self) -> bool:
        """Return True if the calling thread is inside a read (it must not wait for readers)."""
        return bool(getattr(self._local, "depth", 0))

    def exclusively(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once no read transaction of this process is open, keeping new ones out.

        The caller must hold the store's write lock and have no write transaction open.
        """
        with self._cond:
            self._resizing = True
            try:
                while self._readers:
                    if not self._cond.wait(timeout=5.0):
                        log.warning("waiting_for_readers", readers=self._readers)
                fn()
            finally:
                self._resizing = False
                self._cond.notify_all()

    def resize(self, env: lmdb.Environment, new_size: int) -> None:
        """Set the map size once no read transaction of this process is open."""
        self.exclusively(lambda: env.set_mapsize(new_size))


def open_environment(
    directory: pathlib.Path,
    *,
    sync: bool,
    map_size: int,
    max_readers: int,
    metasync: bool = True,
) -> tuple[lmdb.Environment, int]:
    """Open the LMDB environment and clear reader slots left by dead processes.

    ``metasync`` stays on for the log: without it LMDB keeps ACI but a power loss may undo the
    last commit, which breaks the "acknowledged = durable" promise. The views environment turns
    both off (it is rebuilt from the log; see :mod:`store._viewstore`).

    Returns:
        The environment and the number of stale reader slots cleared.
    """
    options: dict[str, Any] = {
        "map_size": map_size,
        "max_dbs": MAX_DBS,
        "max_readers": max_readers,
        "sync": sync,
        "metasync": metasync,
        # Required for several threads; each thread uses its own read transactions.
        "lock": True,
        # Read transactions are reused instead of allocated, one spare per busy reader thread.
        "max_spare_txns": 8,
        "subdir": True,
    }
    env = lmdb.open(str(directory), **options)
    try:
        stale: int = env.reader_check()
    except BaseException:
        env.close()
        raise
    if stale:
        log.info("stale_readers_cleared", path=str(directory), count=stale)
    return env, stale
