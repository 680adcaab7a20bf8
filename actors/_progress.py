"""A view's progress and health, as the projector keeps it and ``Engine.status`` reports it."""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from actors._backoff import Backoff
from views import View

__all__ = ["Failure", "Progress", "ViewState", "ViewStatus"]

ViewState = Literal["ok", "retrying", "stalled"]
"""A view's health: ``"ok"``; ``"retrying"`` (a transient failure, retried by itself);
``"stalled"`` (a corrupt record: stopped until :meth:`Engine.retry_view`)."""


class ViewStatus(msgspec.Struct, frozen=True):
    """One view's progress and health.

    A view is ``"ok"``, ``"retrying"`` or ``"stalled"`` (``state``). *Retrying*: its apply or
    checkpoint write failed (its storage: an LMDB or OS error); it is tried again by itself,
    ``retry_delay`` seconds later, the delay doubling per failure up to 5 s, and the other views
    go on meanwhile. *Stalled*: it met a corrupt record (``error`` starts with ``CorruptLog`` and
    names the position); it stays at the record until :meth:`Engine.retry_view`. In both cases
    ``error``, ``attempts`` and ``failing_since`` describe the episode; all are cleared once a
    step succeeds (logged ``view_recovered``).

    Attributes:
        position: Last position the view has applied.
        lag_events: Events committed but not applied yet.
        lag_seconds: How long the view has been behind (0 when caught up).
        parked: Poison events parked for this view.
        skipped: Undecodable events skipped (views that opted in only).
        error: The last failed attempt's error, ``"<class>: <message>"``, or ``""`` when ok.
        backend: ``"memory"`` or ``"lmdb"``.
        state: ``"ok"``, ``"retrying"`` (transient failure, retried by itself) or ``"stalled"``
            (corrupt record, waits for ``retry_view``).
        attempts: Failed attempts since the view last succeeded (0 when ok).
        failing_since: Unix time of the first of those failures (0.0 when ok).
        retry_delay: Seconds between the last failure and the next automatic attempt (0.0 unless
            retrying).
        folded: While the view catches up from position 0 by folding the log into rows (see
            :mod:`actors._folding`), the position the fold has reached: ``position`` stays 0
            until the rows are written at once. 0 otherwise.
    """

    position: int
    lag_events: int
    lag_seconds: float
    parked: int = 0
    skipped: int = 0
    error: str = ""
    backend: str = ""
    state: ViewState = "ok"
    attempts: int = 0
    failing_since: float = 0.0
    retry_delay: float = 0.0
    folded: int = 0


class Failure(msgspec.Struct, frozen=True):
    """One failure episode of a view: from its first failure to its next success.

    Immutable, replaced whole on each change: a status read on another thread sees one
    consistent episode, never the error of one attempt with the count of another.

    Attributes:
        state: ``"retrying"`` or ``"stalled"`` (see :data:`ViewState`).
        error: The last attempt's error, ``"<class>: <message>"``.
        attempts: Failed attempts in this episode.
        since: Unix time of the episode's first failure.
        delay: Seconds before the next automatic attempt (0 when stalled).
    """

    state: ViewState
    error: str
    attempts: int
    since: float
    delay: float = 0.0

    @classmethod
    def after(
        cls, previous: Failure | None, error: BaseException, *, stalled: bool, backoff: Backoff
    ) -> Failure:
        """Return the episode once ``error`` ended one more attempt (a new one if none)."""
        attempts = 1 if previous is None else previous.attempts + 1
        return cls(
            state="stalled" if stalled else "retrying",
            # The class name first: status readers match on it; the message names the position.
            error=f"{type(error).__name__}: {error}",
            attempts=attempts,
            since=time.time() if previous is None else previous.since,
            delay=0.0 if stalled else backoff.delay(attempts),
        )


class Progress:
    """A projector's progress, shared with the engine (plain attribute reads: thread-safe).

    ``failure`` is replaced whole (an immutable :class:`Failure`), so a status read sees one
    consistent episode. ``waiting`` is the token of the retry timer the view waits for (0: none);
    only the projector's thread reads it.
    """

    def __init__(self, view: View) -> None:
        self.view = view
        self.behind_since: float | None = None
        self.skipped = 0
        self.failure: Failure | None = None
        self.waiting = 0
        self.folded = 0  # see ViewStatus.folded

    @property
    def runnable(self) -> bool:
        """Whether the projector may step the view now (not stalled, no retry pending)."""
        failure = self.failure
        return not self.waiting and (failure is None or failure.state != "stalled")

    def status(self, head: int) -> ViewStatus:
        """Return the view's progress against ``head``."""
        position = self.view.position()
        behind = self.behind_since
        failure = self.failure
        lag_seconds = 0.0
        if position < head and behind is not None:
            lag_seconds = max(0.0, time.monotonic() - behind)
        status = ViewStatus(
            position=position,
            lag_events=max(0, head - position),
            lag_seconds=round(lag_seconds, 6),
            skipped=self.skipped,
            backend=self.view.backend,
            # A view that has loaded its rows has left position 0, possibly a moment before
            # its projector resets `folded` (a status read in between must not show both).
            folded=self.folded if position == 0 else 0,
        )
        if failure is None:
            return status
        return msgspec.structs.replace(
            status,
            error=failure.error,
            state=failure.state,
            attempts=failure.attempts,
            failing_since=failure.since,
            retry_delay=failure.delay,
        )
