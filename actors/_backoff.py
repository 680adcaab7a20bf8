"""Capped exponential backoff for views whose storage fails, and the timers that wake projectors.

A *transient* failure is anything but a corrupt record that stops one step of a view: its apply
or its checkpoint write raised (an LMDB error from the views environment, an ``OSError``, a log
read failing). The view is tried again after :data:`FIRST_DELAY`, then after twice as long each
time, at most :data:`MAX_DELAY` apart, until a step succeeds; meanwhile the other views of the
same projector go on. A corrupt record (``CorruptLog``) is not transient: the view *stalls* and
waits for :meth:`Engine.retry_view` (retrying it would read the same bytes again). A failing view
goes through one failure *episode* (:class:`~actors._progress.Failure`), from its first failure
to its first success (logged ``view_recovered``) or to a manual ``retry_view``.

Why a timer thread, and not a deadline checked when the projector wakes up: a pykka
``ThreadingActor`` blocks on its inbox with no timeout, so on a quiet log nothing would wake the
projector: a view that failed on the last commit would never be retried, and every
read-your-writes query waiting for that commit would time out. Why not sleep in the projector:
the other views it feeds, rebuild swaps and its stop would all wait. So a failing view gets one
daemon :class:`threading.Timer` (:class:`RetryTimers`) that only *tells* the projector the retry
is due; the projector stays the only thread that touches its views. Timers are few (at most one
per failing view) and are cancelled when the projector stops or the view is retried by hand.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Final

import msgspec

__all__ = [
    "FACTOR",
    "FIRST_DELAY",
    "MAX_DELAY",
    "VIEW_RETRY",
    "Backoff",
    "RetryTimers",
]

FIRST_DELAY: Final = 0.05
"""Seconds before the first retry: a blip of the views environment costs a read-your-writes
query about this much."""

FACTOR: Final = 2.0
"""Each further retry waits this many times longer than the one before..."""

MAX_DELAY: Final = 5.0
"""...but never longer than this many seconds: a view whose storage comes back is current again
within 5 s, while a storage that stays down costs one attempt (and one log line) per 5 s."""


class Backoff(msgspec.Struct, frozen=True):
    """Capped exponential backoff: how long a failing view waits before its next attempt.

    Attributes:
        first: Seconds after the first failure.
        factor: Growth per further failure.
        cap: Most seconds between two attempts.
    """

    first: float = FIRST_DELAY
    factor: float = FACTOR
    cap: float = MAX_DELAY

    def delay(self, attempts: int) -> float:
        """Return the wait after the ``attempts``-th failure in a row (1 = the first one)."""
        # The exponent is bounded: a storage down for a day must not overflow the float.
        return min(self.cap, self.first * self.factor ** min(max(attempts - 1, 0), 64))


VIEW_RETRY = Backoff()
"""The backoff projectors use unless given one (tests shorten it)."""


class RetryTimers:
    """One pending retry timer per view, each telling its owner when the retry is due.

    Used by one thread only (the projector's); the timers' own threads only call ``due``.

    Args:
        due: Called on the timer's thread with (view name, token) when a retry is due; it must
            not block (the projector's ``tell``).
    """

    def __init__(self, due: Callable[[str, int], None]) -> None:
        self._due = due
        self._timers: dict[str, threading.Timer] = {}
        # Tokens tell a stale timer (one that fired just as it was cancelled) from the current one.
        self._tokens = itertools.count(1)

    def arm(self, view: str, delay: float) -> int:
        """Call ``due(view, token)`` in ``delay`` seconds, replacing ``view``'s pending timer.

        Returns:
            The token ``due`` will get.
        """
        self.cancel(view)
        token = next(self._tokens)
        timer = threading.Timer(delay, self._due, (view, token))
        timer.name = f"view-retry-{view}"
        timer.daemon = True  # a retry pending at exit must not keep the process alive
        self._timers[view] = timer
        timer.start()
        return token

    def cancel(self, view: str) -> None:
        """Cancel ``view``'s pending timer, if any."""
        timer = self._timers.pop(view, None)
        if timer is not None:
            timer.cancel()

    def cancel_all(self) -> None:
        """Cancel every pending timer."""
        for view in list(self._timers):
            self.cancel(view)

    def __len__(self) -> int:
        """Return the number of timers armed and not cancelled (fired ones included)."""
        return len(self._timers)
