"""What a projector tells the query router about its views, and when.

Read-your-writes waits in the router (:mod:`actors._router`) for a view to reach a position;
the projector (:mod:`actors._projector`) is what moves the views. Telling the router costs a
wake-up of its thread, and under load each wake-up delays the command path, so the projector
tells it only while queries wait, as soon as each view has applied its batch, and then lets the
router's thread answer them before it goes on (see :meth:`RouterLink.tell`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final

from actors._messages import Teller, ViewAdvanced

__all__ = ["HAND_OVER_SECONDS", "RouterLink"]

HAND_OVER_SECONDS: Final = 0.005
"""The longest a projector's step pauses for the router, in all (see :meth:`RouterLink.tell`)."""
_HAND_OVER_POLL: Final = 0.0001


class RouterLink:
    """The projector's side of read-your-writes: telling the router its views advanced.

    Args:
        router: Told :class:`ViewAdvanced`; None: nothing is told.
        waiting: Returns how many queries wait in the router; a view's progress is told only
            while some do. The router checks the view again after parking a query, so a batch
            and a parking that race are never both missed. None: always told.
        due: Returns whether a query parked for the named view at or before the position is
            still unanswered; after telling, the projector pauses until it is not. None: it
            never pauses.
        report_steps: Also tell every step's positions at its end, whether or not queries wait
            (the ``router`` of a projection process is the pipe to the engine, which keeps the
            positions of the views there from these reports).
    """

    __slots__ = ("_due", "_report_steps", "_router", "_until", "_waiting")

    def __init__(
        self,
        router: Teller | None,
        *,
        waiting: Callable[[], int] | None = None,
        due: Callable[[str, int], bool] | None = None,
        report_steps: bool = False,
    ) -> None:
        self._router = router
        self._waiting = waiting
        self._due = due
        self._report_steps = report_steps
        self._until = 0.0  # perf_counter() deadline of this step's pauses

    def queries_waiting(self) -> bool:
        """Return whether queries may wait in the router (always, without a count)."""
        return self._waiting is None or self._waiting() > 0

    def begin_step(self) -> None:
        """Start a projector step: its pauses for the router add up to ``HAND_OVER_SECONDS``."""
        self._until = time.perf_counter() + HAND_OVER_SECONDS

    def tell(self, positions: dict[str, int]) -> None:
        """Tell the router ``positions`` if queries wait, then let it answer them.

        The pause, the GIL free, until the router has answered the queries these positions
        wake: without it the router's thread, woken by the tell, waits for the GIL while the
        projector goes on with the other views' batches (up to a switch interval, 5 ms, and
        longer if the write path's threads win the GIL first), and then the caller waits again.
        Measured with a paced load of 9.6k commands/s, six alternating runs each: ack ->
        visible p50 2.47 -> 2.14 ms, p99 14.1 -> 12.8 ms (medians of the runs). At most
        ``HAND_OVER_SECONDS`` per step, so many waiting queries cannot hold the views back;
        with no query waiting it costs nothing.
        """
        # Positions are set before `waiting` is read; the router parks, then reads them.
        if self._router is None or not self.queries_waiting():
            return
        self._router.tell(ViewAdvanced(positions))
        due = self._due
        if due is None:
            return
        for name, position in positions.items():
            while due(name, position) and time.perf_counter() < self._until:
                time.sleep(_HAND_OVER_POLL)

    def end_step(self, advanced: Mapping[str, int]) -> None:
        """Tell a step's positions at its end if every step is reported (``report_steps``)."""
        if advanced and self._report_steps and self._router is not None:
            self._router.tell(ViewAdvanced(dict(advanced)))

    def adopted(self, name: str, position: int) -> None:
        """Tell that view ``name`` adopted a rebuilt copy at ``position`` (always told)."""
        if self._router is not None:
            self._router.tell(ViewAdvanced({name: position}))
