"""An opt-in bound on how far the views may fall behind the writers (``max_view_lag``).

Without it nothing slows the writers for a lagging view (the Guarantees table, row 10): under a
load the views cannot follow, they fall further behind for as long as it lasts, and a query
with ``after=`` waits that long. With ``Engine.open(max_view_lag=n)`` the projector holds the
engine's door (:meth:`~actors._gate.InFlightGate.hold`) while its views are more than ``n``
events behind the head (checked at every commit, in the writer's thread), and lets go once
they are back within it: new commands then wait (up
to their timeout, as for the in-flight limit), commands already admitted go on. Only views the
projector steps count: a stalled view, one waiting out a retry, or one still folding from 0
after open never holds the writers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from actors._messages import HeadAdvanced

__all__ = ["LagBound", "check_max_view_lag"]


def check_max_view_lag(limit: object, projection: str) -> None:
    """Refuse a bound the engine cannot keep, before anything is opened.

    Raises:
        TypeError: ``limit`` is not an int (nor None).
        ValueError: ``limit`` is below 1, or the views are projected by another process.
    """
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"max_view_lag must be a number of events, got {limit!r}")
    if limit < 1:
        raise ValueError(f"max_view_lag must be at least 1 event, got {limit!r}")
    if projection != "in-process":
        raise ValueError(
            "max_view_lag bounds the views this process projects: it needs "
            f"projection='in-process', got {projection!r}"
        )


class LagBound:
    """Holds the door while the slowest counted view is more than ``limit`` events behind.

    Two threads feed it: the writer tells it every new head (it is subscribed like a
    projector, and :meth:`tell` runs in the writer's thread, so the door closes at the commit
    that crosses the bound, not when the projector next looks), and the projector reports its
    counted views' positions after each view's batch (:meth:`update`), which opens it again.
    The positions may be a batch old: that only holds the door a little early.

    Args:
        limit: Most events the views may be behind before new commands wait.
        hold: Called with True to hold the door, False to let it go (on changes only).
    """

    def __init__(self, limit: int, hold: Callable[[bool], None]) -> None:
        self.limit = limit
        self._hold = hold
        self._lock = threading.Lock()
        self._head = 0
        self._slowest: int | None = None  # None: no view counted (yet), never hold
        self.holding = False

    def tell(self, message: object) -> None:
        """Take the writer's :class:`~actors._messages.HeadAdvanced` (in its thread)."""
        if isinstance(message, HeadAdvanced):
            with self._lock:
                self._head = max(self._head, message.head)
                self._decide()

    def update(self, head: int, positions: Iterable[int]) -> None:
        """Take the projector's counted views' positions (and the head it knows)."""
        slowest = min(positions, default=None)
        with self._lock:
            self._head = max(self._head, head)
            self._slowest = slowest
            self._decide()

    def release(self) -> None:
        """Let go for good (the projector stops)."""
        with self._lock:
            self._slowest = None
            self._decide()

    def _decide(self) -> None:
        # Called with the lock held: the writer's and the projector's calls never interleave.
        holding = self._slowest is not None and self._head - self._slowest > self.limit
        if holding != self.holding:
            self.holding = holding
            self._hold(holding)
