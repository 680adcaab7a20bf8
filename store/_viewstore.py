"""The views' own LMDB environment, apart from the log: ``<data>/views/``.

Why apart: a view commit must never wait for a command's commit nor add an fsync to it. So the
views environment has its own file, its own write lock, and no fsync per commit (LMDB
``sync=False``): the log is the source of truth, and a view can always be rebuilt from it. Rows and
checkpoint still commit in one transaction, so after a *process* crash (the page cache survives)
every view resumes exactly once from its checkpoint.

An *OS* crash can lose or tear unflushed commits of a ``sync=False`` environment. The store keeps
that window small and detectable:

- it flushes (``env.sync``) at most every ``sync_interval`` seconds after a write
  (:meth:`ViewStore.sync_if_due`, called by the engine's housekeeping) and at close;
- a marker file records the boot id and whether unflushed writes may exist. It is set *dirty*
  (and fsynced) before the first write after a flush, *clean* after each flush.

At open the environment is checked; it is wiped and rebuilt from the log (logged
``views_store_rebuilt``, reported by :attr:`ViewStore.recovered`) when:

- the marker is dirty and the boot id changed: the OS went down with unflushed view writes, so
  pages may be torn (a clean marker means everything was flushed: the views resume from their
  checkpoints, older or not);
- LMDB cannot read it (a damaged file);
- a checkpoint is ahead of the log's head (the log lost commits the views had seen, e.g. an
  async-durability log after an OS crash).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from typing import Final, Self

import lmdb

from store._env import open_environment
from store._logging import get_logger
from store._txns import Transactions

__all__ = ["ViewStore", "boot_id"]

log = get_logger(__name__)

_TABLES: Final = ("checkpoints",)
MARKER: Final = "views.state"
_MARKER_SIZE: Final = 64  # fixed size: rewritten in place, one sector


def boot_id() -> str:
    """Return this boot's id (Linux), or ``"unknown"`` (then every dirty marker is trusted)."""
    try:
        return pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _read_marker(directory: pathlib.Path) -> tuple[str, bool] | None:
    try:
        text = (directory / MARKER).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    boot, _, state = text.partition(" ")
    return boot, state == "clean"


def _damage(directory: pathlib.Path, head: int | None) -> str:
    """Return why the views environment in ``directory`` cannot be trusted, or ``""``."""
    if not (directory / "data.mdb").exists():
        return ""
    marker = _read_marker(directory)
    if marker is not None:
        boot, clean = marker
        if not clean and boot not in {boot_id(), "unknown"}:
            return "the machine restarted while view writes were not flushed to disk"
    try:
        checkpoints = _read_checkpoints(directory)
    except (lmdb.Error, UnicodeDecodeError) as error:
        return f"unreadable ({type(error).__name__}: {error})"
    ahead = [
        (name, position)
        for name, position in checkpoints.items()
        if head is not None and position > head
    ]
    if ahead:
        name, position = ahead[0]
        return f"view checkpoint {name}={position} is ahead of the log's head {head}"
    return ""


def _read_checkpoints(directory: pathlib.Path) -> dict[str, int]:
    env = lmdb.open(str(directory), max_dbs=16, readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            try:
                db = env.open_db(b"checkpoints", txn=txn, create=False)
            except lmdb.NotFoundError:
                return {}  # created but never written: nothing to distrust
            return {
                key.decode(): int.from_bytes(value, "big")
                for key, value in txn.cursor(db=db).iternext()
            }
    finally:
        env.close()


class ViewStore(Transactions):
    """The views environment: named databases and checkpoints, no fsync per commit.

    Open it with :meth:`open`. Same transaction API as the event store (``read``, ``write``,
    ``open_db``, ``checkpoint``, ``set_checkpoint``), plus flushing.

    Attributes:
        recovered: Why the environment was wiped and rebuilt at open, or ``""``.
        snapshots: The directory memory views write their snapshots to.
    """

    def __init__(
        self,
        path: pathlib.Path,
        env: lmdb.Environment,
        *,
        recovered: str,
        sync_interval: float,
    ) -> None:
        super().__init__(path, env, _TABLES)
        self.recovered = recovered
        self.snapshots = path / "snapshots"
        self._sync_interval = sync_interval
        self._boot = boot_id()
        self._dirty = False
        self._last_sync = time.monotonic()
        self._marker_fd = os.open(path / MARKER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._set_marker(clean=True)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        head: int | None = None,
        map_size: int = 64 * 2**20,
        max_readers: int = 126,
        sync_interval: float = 1.0,
    ) -> ViewStore:
        """Open (creating, or wiping a damaged one) the views environment in ``path``.

        Args:
            path: The views directory (``<data>/views``); created if missing.
            head: The log's head: a checkpoint beyond it means the environment is stale (None:
                not checked).
            map_size: Initial LMDB map size in bytes; it doubles by itself when full.
            max_readers: LMDB reader slots.
            sync_interval: Most seconds a view write stays unflushed (OS-crash exposure).
        """
        directory = pathlib.Path(path)
        reason = _damage(directory, head)
        if reason:
            log.warning("views_store_rebuilt", path=str(directory), reason=reason)
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        env, _ = open_environment(
            directory, sync=False, map_size=map_size, max_readers=max_readers, metasync=False
        )
        try:
            store = cls(directory, env, recovered=reason, sync_interval=sync_interval)
        except BaseException:
            env.close()
            raise
        log.info("views_store_opened", path=str(directory))
        return store

    @classmethod
    def attach(cls, path: str | os.PathLike[str], *, sync_interval: float = 1.0) -> ViewStore:
        """Open the views environment the engine already checked, from a projection process.

        The engine's process opened it first (:meth:`open`: the damage checks, the wipe) and
        writes nothing to it while the projection process runs; this process is then its only
        writer and owns the marker. Whatever an earlier projection process left unflushed (it
        may have been killed) is flushed before the marker says clean.
        """
        directory = pathlib.Path(path)
        env, _ = open_environment(
            directory, sync=False, map_size=64 * 2**20, max_readers=126, metasync=False
        )
        try:
            env.sync(force=True)
            store = cls(directory, env, recovered="", sync_interval=sync_interval)
        except BaseException:
            env.close()
            raise
        log.info("views_store_attached", path=str(directory), pid=os.getpid())
        return store

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _set_marker(self, *, clean: bool) -> None:
        text = f"{self._boot} {'clean' if clean else 'dirty'}".ljust(_MARKER_SIZE - 1) + "\n"
        os.pwrite(self._marker_fd, text.encode("ascii"), 0)
        os.fsync(self._marker_fd)

    def _before_write(self) -> None:
        # Under the same hold of the write lock as the transaction that follows, so a flush
        # (which takes that lock too) can never mark the environment clean in between.
        if not self._dirty:
            # Durable before any unflushed page can reach the disk: an OS crash after this
            # point is detected at the next open.
            self._set_marker(clean=False)
            self._dirty = True

    def sync_if_due(self, *, force: bool = False) -> bool:
        """Flush the environment if it has unflushed writes older than the interval.

        Returns:
            Whether it flushed.
        """
        if not self._dirty:
            return False
        if not force and time.monotonic() - self._last_sync < self._sync_interval:
            return False
        with self._write_lock:
            if self._closed or not self._dirty:
                return False
            self.env.sync(force=True)
            self._set_marker(clean=True)
            self._dirty = False
            self._last_sync = time.monotonic()
        return True

    def close(self) -> None:
        """Flush, mark clean and close the environment. Idempotent."""

        def final() -> None:
            try:
                self.env.sync(force=True)
                self._set_marker(clean=True)
            finally:
                self.env.close()
                os.close(self._marker_fd)

        if self._close_with(final):
            log.info("views_store_closed", path=str(self.path))
