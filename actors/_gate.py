"""Bounded in-flight work: the backpressure gate between callers and the write side."""

from __future__ import annotations

import threading
import time

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
        self._cond = threading.Condition(threading.Lock())

    @property
    def count(self) -> int:
        """Commands in flight now."""
        return self._count

    def try_enter(self) -> bool:
        """Take a slot if one is free right now."""
        with self._cond:
            if self._count >= self._limit:
                return False
            self._count += 1
            return True

    def enter(self, timeout: float) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds; False if none freed up."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count >= self._limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self._count += 1
            return True

    def leave(self, _: object = None) -> None:
        """Free a slot (usable directly as a future's done-callback)."""
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight; False if the timeout expired first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
