"""Bounded in-flight work: the backpressure gate between callers and the write side."""

from __future__ import annotations

import threading
import time

from domain.errors import EngineClosed

__all__ = ["InFlightGate"]


class InFlightGate:
    """Counts commands in flight and makes callers wait when there are too many.

    When callers outrun the disk, ``enter`` blocks (up to its timeout) instead of letting queued
    commands grow memory without limit. ``leave`` is called from the thread that resolves a
    command's future (the writer, usually).

    Args:
        limit: Most commands in flight at once.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_in_flight must be >= 1")
        self._limit = limit
        self._count = 0
        self._closed = False
        # The hot path (try_enter/leave, twice per command) takes the bare C lock and notifies
        # only when somebody waits: a Condition's own methods are Python code.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiters = 0
        self._held = False  # see hold()

    @property
    def count(self) -> int:
        """Commands in flight now."""
        return self._count

    def close(self) -> None:
        """Refuse every later entry; callers already admitted still leave as usual.

        Admission and closing share one lock, so after ``close`` returns the count covers every
        command that will ever be dispatched: ``wait_idle`` then really drains. Checking an
        engine flag before ``enter`` left a window where a caller past the check was admitted
        after the drain and dispatched to stopped actors (it got a raw ActorDeadError).
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def try_enter(self) -> bool:
        """Take a slot if one is free right now.

        Raises:
            EngineClosed: The gate was closed.
        """
        with self._lock:
            if self._closed:
                raise EngineClosed
            if self._count >= self._limit or self._held:
                return False
            self._count += 1
            return True

    def enter(self, timeout: float) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds; False if none freed up.

        Raises:
            EngineClosed: The gate was closed (also while waiting).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count >= self._limit or self._held:
                if self._closed:
                    raise EngineClosed
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wait(remaining)
            if self._closed:
                raise EngineClosed
            self._count += 1
            return True

    def hold(self, held: bool) -> None:
        """Admit nothing new while ``held`` (the views are too far behind, see ``LagBound``).

        Commands already admitted go on; callers waiting in :meth:`enter` are woken on release.
        """
        with self._lock:
            self._held = held
            if not held and self._waiters:
                self._cond.notify_all()

    def _wait(self, seconds: float) -> None:
        # Called with the lock held.
        self._waiters += 1
        try:
            self._cond.wait(seconds)
        finally:
            self._waiters -= 1

    def leave(self, _: object = None) -> None:
        """Free a slot (usable directly as a future's done-callback)."""
        with self._lock:
            self._count -= 1
            if self._waiters:
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight; False if the timeout expired first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wait(remaining)
            return True
