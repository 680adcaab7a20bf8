"""A child process for the crash tests: it works on a data directory until the parent kills it.

Usage: ``python reliability_child.py MODE PATH [ARGS...]`` with the repository root on
PYTHONPATH. Stdout carries one line per fact, flushed at once (the parent kills us at random
moments: only what is on the pipe counts); logs go to stderr.

Modes:
    write PATH DURABILITY TAG THREADS: submit order commands from THREADS threads, many in
        flight, printing ``ACK command_id aggregate_id version position`` per acknowledged one.
    project PATH: open the engine with every order view in LMDB over an existing log and print
        ``POS <order_stats position> <head>`` while the views catch up.
    reader PATH: open the engine, begin a read transaction, print ``READING``, wait.
    holdenv PATH: open the raw LMDB environment read-only (keeping its reader table alive),
        print ``READY``, wait.
    hold PATH: open the engine, print ``READY <pid>``; then per stdin line ``run CID`` execute
        that command and print its ACK; ``exit`` closes the engine and exits.
    tryopen PATH: try to open the engine; print ``LOCKED <pid>`` or ``OPENED``.
    rebuild PATH: open the engine (default views), wait for the views, print ``READY <head>``,
        then rebuild every view printing ``PROG <done> <total>`` as it goes, until killed.
    snapshot PATH TAG ROUNDS STAGE: open the engine (default views), wait for the views, then
        loop: execute one command (printing its ACK) and snapshot every memory view at once
        (printing ``SNAP <n>``). The snapshot after the ROUNDS-th one stops inside the real file
        write at STAGE (``write``: half the bytes written; ``fsync``: all written, not yet
        fsynced nor renamed; ``dirsync``: renamed, directory not yet fsynced), prints
        ``STALL <stage>`` and waits to be killed.
    viewreader PATH: open a ``views.ViewReader`` (every order view in LMDB), print ``READY``;
        then per stdin line ``get ORDER_ID POSITION`` print ``ORDER <status> <item_count>
        <total>`` as of at least POSITION (or ``NONE``), and per ``stats POSITION`` print
        ``STATS <total_orders>``; ``exit`` exits.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from typing import Any

import lmdb
import structlog
from reliability_kit import STEPS, command_for, command_id

import views._snapshot_file as snapshot_file
from actors import CommandResult, Engine, LogLocked
from views import LmdbView, ViewReader
from views.orders import GetOrderById, GetOrderStats

_print_lock = threading.Lock()
_MAX_ORDERS = 100_000  # per thread: far more than any test reads before it kills us
_WINDOW = 24  # commands in flight per thread


def emit(*fields: object) -> None:
    """Print one line and flush it at once (a SIGKILL may come right after)."""
    with _print_lock:
        sys.stdout.write(" ".join(map(str, fields)) + "\n")
        sys.stdout.flush()


def on_done(cid: str) -> Any:
    """Return a done-callback printing the command's ACK (or ERR)."""

    def done(future: Any) -> None:
        try:
            result: CommandResult = future.get(timeout=0)
        except Exception as error:
            emit("ERR", cid, repr(error).replace("\n", " "))
            return
        emit("ACK", cid, result.aggregate_id, result.version, result.position)

    return done


def writer_thread(engine: Engine, tag: str, thread: int) -> None:
    """Submit every order's commands in order, keeping a window of them in flight."""
    in_flight: deque[Any] = deque()
    for order in range(_MAX_ORDERS):
        for step in range(STEPS):
            cid = command_id(tag, thread, order, step)
            future = engine.submit(command_for(cid), timeout=30)
            future.add_done_callback(on_done(cid))
            in_flight.append(future)
            while len(in_flight) > _WINDOW:
                in_flight.popleft().get(timeout=30)


def write(path: str, durability: str, tag: str, threads: int) -> None:
    """Write under load until killed."""
    engine = Engine.open(path, durability=durability)  # type: ignore[arg-type]
    emit("READY", os.getpid())
    workers = [
        threading.Thread(target=writer_thread, args=(engine, tag, t), daemon=True)
        for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    emit("DONE")
    sys.stdin.read()


def project(path: str) -> None:
    """Let the LMDB views catch up on a large log, reporting progress until killed."""
    backends: Any = dict.fromkeys(
        ("order_details", "customer_orders", "order_search", "order_stats"), "lmdb"
    )
    engine = Engine.open(path, view_backends=backends)
    head = engine.store.head()
    emit("READY", head)
    last = -1
    while True:
        position = engine.status().views["order_stats"].position
        if position != last:
            emit("POS", position, head)
            last = position
        if position >= head:
            break
        threading.Event().wait(0.0005)
    emit("CAUGHT")
    sys.stdin.read()


def foldkill(path: str) -> None:
    """Let LMDB views at 0 fold the log; block before the second view loads its rows."""
    loads = 0
    load_rows = LmdbView.load_rows

    def blocking(view: LmdbView, rows: Any, up_to: int) -> None:
        nonlocal loads
        loads += 1
        if loads == 2:
            emit("BLOCKED")
            threading.Event().wait()  # until killed
        load_rows(view, rows, up_to)

    LmdbView.load_rows = blocking  # type: ignore[method-assign, assignment]
    backends: Any = dict.fromkeys(
        ("order_details", "customer_orders", "order_search", "order_stats"), "lmdb"
    )
    Engine.open(path, view_backends=backends)
    emit("READY")
    sys.stdin.read()


def reader(path: str) -> None:
    """Die holding an LMDB reader slot."""
    engine = Engine.open(path)
    txn = engine.store.env.begin()
    txn.get(b"anything")
    emit("READING", os.getpid())
    sys.stdin.read()


def holdenv(path: str) -> None:
    """Keep the environment open (so its reader table outlives the other processes)."""
    env = lmdb.open(path, readonly=True, lock=True, max_dbs=256, subdir=True)
    emit("READY", os.getpid())
    sys.stdin.read()
    env.close()


def hold(path: str) -> None:
    """Hold the engine and run commands the parent sends."""
    with Engine.open(path) as engine:
        emit("READY", os.getpid())
        for line in sys.stdin:
            words = line.split()
            if words == ["exit"]:
                break
            if words and words[0] == "run":
                result = engine.execute(command_for(words[1]))
                emit("ACK", words[1], result.aggregate_id, result.version, result.position)
    emit("CLOSED")


def tryopen(path: str) -> None:
    """Try to open the engine once."""
    try:
        engine = Engine.open(path)
    except LogLocked as locked:
        emit("LOCKED", locked.pid)
        return
    engine.close()
    emit("OPENED")


def rebuild(path: str) -> None:
    """Rebuild every view over an existing log, reporting progress until killed."""
    engine = Engine.open(path)
    engine.wait_for_views(timeout=120)
    emit("READY", engine.store.head())
    engine.rebuild(progress=lambda done, total: emit("PROG", done, total))
    emit("REBUILT")
    sys.stdin.read()


class _StallingOs:
    """Fault injection around the real ``os`` of the snapshot writer: once armed, it stops the
    write at one stage (printing ``STALL``) until the parent kills the process.

    It replaces ``os`` in ``views._snapshot_file`` only, so the snapshot file code runs as it is
    and every other call passes through.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.armed = threading.Event()
        self._fsyncs = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _stall(self) -> None:
        emit("STALL", self.stage)
        threading.Event().wait()  # forever: the parent kills us here

    def write(self, fd: int, data: Any) -> int:
        if self.armed.is_set() and self.stage == "write":
            with self._lock:
                os.write(fd, data[: max(1, len(data) // 2)])
                self._stall()
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.armed.is_set():
            with self._lock:
                self._fsyncs += 1
                # The file's fsync comes first, the directory's (after the rename) second.
                if (self.stage, self._fsyncs) in (("fsync", 1), ("dirsync", 2)):
                    self._stall()
        os.fsync(fd)


def snapshot(path: str, tag: str, rounds: str, stage: str) -> None:
    """Alternate one acknowledged command and a snapshot of every memory view; stall in one."""
    stalling = _StallingOs(stage)
    snapshot_file.os = stalling  # type: ignore[attr-defined,assignment]
    engine = Engine.open(path)
    engine.wait_for_views(timeout=120)
    snapshots = engine._read.snapshots
    assert snapshots is not None
    names = list(snapshots._views)
    emit("READY")
    for n in range(_MAX_ORDERS):
        cid = command_id(tag, 0, n, 0)
        result = engine.execute(command_for(cid))
        emit("ACK", cid, result.aggregate_id, result.version, result.position)
        engine.wait_for_views(result.position, timeout=60)
        if n == int(rounds):
            stalling.armed.set()
        snapshots._save(names)
        emit("SNAP", n)


def viewreader(path: str) -> None:
    """Answer the parent's queries from the views environment, in this other process."""
    everything = dict.fromkeys(
        ("order_details", "customer_orders", "order_search", "order_stats"), "lmdb"
    )
    with ViewReader.open(path, view_backends=everything) as reader:  # type: ignore[arg-type]
        emit("READY", os.getpid())
        for line in sys.stdin:
            words = line.split()
            if words == ["exit"]:
                break
            if words[0] == "get":
                found = reader.query(GetOrderById(words[1]), after=int(words[2]), timeout=30)
                if found is None:
                    emit("NONE")
                else:
                    emit("ORDER", found.status, found.item_count, found.total_amount)
            elif words[0] == "stats":
                stats = reader.query(GetOrderStats(), after=int(words[1]), timeout=30)
                emit("STATS", stats.total_orders)


# The modes that take the data directory alone.
_PATH_MODES: dict[str, Any] = {
    "project": project,
    "foldkill": foldkill,
    "reader": reader,
    "holdenv": holdenv,
    "hold": hold,
    "rebuild": rebuild,
    "tryopen": tryopen,
    "viewreader": viewreader,
}


def main() -> None:
    """Configure logging to stderr (stdout carries data only) and run the mode."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    mode, path, *args = sys.argv[1:]
    if mode == "write":
        write(path, args[0], args[1], int(args[2]))
    elif mode == "snapshot":
        snapshot(path, *args)
    elif mode in _PATH_MODES:
        _PATH_MODES[mode](path)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
