"""Backup and compaction of a data directory, with LMDB's own consistent copies.

A data directory holds two LMDB environments, the log (``<data>/data.mdb``) and the views
(``<data>/views/data.mdb``), plus the memory views' snapshot files (``<data>/views/snapshots``).

**Backup** (hot: an engine may be writing, in this process or another). LMDB's copy runs inside
one read transaction, so each environment's copy is a consistent snapshot of it, taken without
stopping the writer. The pieces are copied in this order: the views environment, then the
snapshot files, then the log. A view's checkpoint and a snapshot's position are never ahead of
the log they were taken from, so in the backup every view is at or behind the log's head and
simply catches up when the backup is opened, and the log holds every command acknowledged
before the backup started. The copy is built in ``.<dest>.partial`` next to ``dest`` and
renamed to ``dest`` once every file is fsynced: a backup that was interrupted never looks whole.
The copies are compacting ones (free pages left out), so a backup is also as small as can be.

**Compaction** (cold: no engine may hold the directory; its lock is taken for the duration).
Each environment is copied with ``compact=True`` into a temporary directory beside its file,
fsynced, then renamed over the old file (atomic on one file system). A crash leaves the old
file or the new one, whole, and a stray temporary directory that the next compaction removes.
LMDB never gives space back to the file system on its own (freed pages are only reused), so
this is how a directory shrinks after many deletions (pruned idempotency rows, rebuilt views).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import lmdb
import msgspec

from domain.errors import MaintenanceFailed
from store._env import MAX_DBS, ProcessLock
from store._logging import get_logger
from store._txns import DATA_FILE

if TYPE_CHECKING:
    from store._env import Txn
    from store._txns import Transactions

__all__ = [
    "SNAPSHOTS_DIR",
    "VIEWS_DIR",
    "BackupReport",
    "CompactReport",
    "backup",
    "backup_open",
    "compact",
]

log = get_logger(__name__)

VIEWS_DIR: Final = "views"
"""The views environment's subdirectory of a data directory."""
SNAPSHOTS_DIR: Final = "snapshots"
"""The memory views' snapshot files, inside :data:`VIEWS_DIR`."""
_COMPACT_TMP: Final = ".compact-tmp"
_SNAPSHOT_SUFFIX: Final = ".snapshot"


class BackupReport(msgspec.Struct, frozen=True):
    """What a backup copied.

    Attributes:
        dest: The backup's directory (open it with ``Engine.open``).
        bytes: Bytes written (both environments and the snapshot files).
        snapshots: Memory-view snapshot files copied.
        seconds: How long it took.
    """

    dest: str
    bytes: int
    snapshots: int
    seconds: float


class CompactReport(msgspec.Struct, frozen=True):
    """What a compaction did.

    Attributes:
        path: The data directory.
        before: Bytes of the environments' data files before.
        after: Bytes after.
        seconds: How long it took.
    """

    path: str
    before: int
    after: int
    seconds: float


# A copy function: copies one environment into an (existing, empty) directory.
_Copier = Callable[[pathlib.Path], None]


def backup_open(
    log_store: Transactions, view_store: Transactions | None, dest: str | os.PathLike[str]
) -> BackupReport:
    """Back up the data directory of stores open in this process (what ``Engine.backup`` uses).

    The copies run in read transactions of the stores themselves (two opens of one LMDB
    environment in one process would break its locks), registered like any read, so a map
    growth waits for them.

    Raises:
        MaintenanceFailed: ``dest`` exists and is not an empty directory, or a copy failed.
    """

    def copier(store: Transactions) -> _Copier:
        def copy(target: pathlib.Path) -> None:
            store.read(lambda txn: _copy_in(store.env, txn, target))

        return copy

    views = None if view_store is None else copier(view_store)
    snapshots = log_store.path / VIEWS_DIR / SNAPSHOTS_DIR
    return _backup(log_store.path, copier(log_store), views, snapshots, dest)


def backup(path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> BackupReport:
    """Back up the data directory ``path`` into ``dest``, whether an engine runs on it or not.

    For a directory held by an engine in *another* process, or by none (``python main.py
    backup``). The environments are opened read-only beside the running engine (LMDB allows
    readers in other processes); the engine goes on writing.

    Raises:
        MaintenanceFailed: ``path`` holds no data directory, this process holds it (use
            ``Engine.backup``), or ``dest`` exists and is not an empty directory.
    """
    source = pathlib.Path(path)
    if not (source / DATA_FILE).is_file():
        raise MaintenanceFailed("backup", str(source), "it holds no data directory (no data.mdb)")
    if ProcessLock.held_here(source):
        raise MaintenanceFailed(
            "backup", str(source), "an engine of this process holds it; call engine.backup(dest)"
        )
    views_dir = source / VIEWS_DIR
    views = _reader(views_dir) if (views_dir / DATA_FILE).is_file() else None
    return _backup(source, _reader(source), views, views_dir / SNAPSHOTS_DIR, dest)


def _reader(directory: pathlib.Path) -> _Copier:
    def copy(target: pathlib.Path) -> None:
        env = lmdb.open(
            str(directory), readonly=True, lock=True, max_dbs=MAX_DBS, subdir=True, create=False
        )
        try:
            while True:
                try:
                    txn = env.begin()
                except lmdb.MapResizedError:
                    env.set_mapsize(0)  # the engine grew the map meanwhile: adopt its size
                    continue
                try:
                    _copy_in(env, txn, target)
                finally:
                    txn.abort()
                return
        finally:
            env.close()

    return copy


def _copy_in(env: lmdb.Environment, txn: Txn, target: pathlib.Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    env.copy(str(target), compact=True, txn=txn)


def _backup(
    source: pathlib.Path,
    copy_log: _Copier,
    copy_views: _Copier | None,
    snapshots: pathlib.Path,
    dest: str | os.PathLike[str],
) -> BackupReport:
    started = time.perf_counter()
    final = pathlib.Path(dest)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise MaintenanceFailed(
            "backup", str(final), "it exists and is not an empty directory; name a new one"
        )
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted backup
    try:
        # Views first, snapshots next, the log last: nothing in the backup is ahead of its log.
        if copy_views is not None:
            copy_views(partial / VIEWS_DIR)
        copied = _copy_snapshots(snapshots, partial / VIEWS_DIR / SNAPSHOTS_DIR)
        copy_log(partial)
        written = _fsync_tree(partial)
        if final.exists():
            final.rmdir()  # empty, checked above
        partial.rename(final)
        _fsync_dir(final.parent)
    except (OSError, lmdb.Error) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise MaintenanceFailed("backup", str(final), f"{type(error).__name__}: {error}") from error
    report = BackupReport(str(final), written, copied, round(time.perf_counter() - started, 6))
    log.info(
        "backup_done", path=str(source), dest=str(final), bytes=written, seconds=report.seconds
    )
    return report


def _copy_snapshots(source: pathlib.Path, target: pathlib.Path) -> int:
    if not source.is_dir():
        return 0
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    # Each file is replaced by an atomic rename: an open file is one whole snapshot.
    for file in sorted(source.glob(f"*{_SNAPSHOT_SUFFIX}")):
        try:
            with file.open("rb") as reader, (target / file.name).open("wb") as writer:
                shutil.copyfileobj(reader, writer)
        except FileNotFoundError:
            continue  # removed meanwhile: the view replays from the log instead
        copied += 1
    return copied


def _fsync_tree(root: pathlib.Path) -> int:
    written = 0
    for directory, _, files in os.walk(root):
        for name in files:
            path = pathlib.Path(directory, name)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            written += path.stat().st_size
        _fsync_dir(pathlib.Path(directory))
    return written


def _fsync_dir(directory: pathlib.Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compact(path: str | os.PathLike[str]) -> CompactReport:
    """Compact the data directory ``path`` (log and views) in place; no engine may hold it.

    Raises:
        LogLocked: A live engine (this process or another) holds ``path``; stop it first.
        MaintenanceFailed: ``path`` holds no data directory, or a copy failed (the directory
            is left as it was).
    """
    started = time.perf_counter()
    directory = pathlib.Path(path)
    if not (directory / DATA_FILE).is_file():
        raise MaintenanceFailed("compact", str(directory), "it holds no data directory")
    lock = ProcessLock(directory)  # LogLocked while an engine holds it
    try:
        environments: Sequence[pathlib.Path] = [
            env for env in (directory, directory / VIEWS_DIR) if (env / DATA_FILE).is_file()
        ]
        before = sum((env / DATA_FILE).stat().st_size for env in environments)
        for env in environments:
            _compact_one(env)
        after = sum((env / DATA_FILE).stat().st_size for env in environments)
    except (OSError, lmdb.Error) as error:
        raise MaintenanceFailed(
            "compact",
            str(directory),
            f"{type(error).__name__}: {error}; the file being compacted was left as it was",
        ) from error
    finally:
        lock.release()
    report = CompactReport(str(directory), before, after, round(time.perf_counter() - started, 6))
    log.info("compacted", path=str(directory), before=before, after=after, seconds=report.seconds)
    return report


def _compact_one(directory: pathlib.Path) -> None:
    temporary = directory / _COMPACT_TMP
    shutil.rmtree(temporary, ignore_errors=True)  # left by an interrupted compaction
    temporary.mkdir()
    env = lmdb.open(str(directory), readonly=True, lock=True, max_dbs=MAX_DBS, subdir=True)
    try:
        with env.begin() as txn:
            env.copy(str(temporary), compact=True, txn=txn)
    finally:
        env.close()
    _fsync_tree(temporary)
    (temporary / DATA_FILE).rename(directory / DATA_FILE)
    _fsync_dir(directory)
    shutil.rmtree(temporary)
