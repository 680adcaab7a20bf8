"""A rebuild's row folds: views whose read models fold one row per key, fed as one group.

Views that share a :class:`~views._view.RowFold` (the four order views share one) and start
empty are rebuilt as a group (:func:`row_groups`): the scan's events are folded into one plain
state per key for all of them (:meth:`RowGroup.feed`), and at the end each view writes every
key's final row once (:meth:`RowGroup.load`). A poison event (one the fold cannot apply) is
parked for every view of the group, as each view's own ``apply`` would have refused it: a fold
is pure, so it is parked at once, not retried.

The states live in memory until the load; past :data:`MAX_KEYS` keys the group loads what it
has and its views go on event by event (:func:`~actors._replay.apply_safely`), which bounds
what a rebuild of a huge keyed view holds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from store import ParkedEvent, ProjectionLog, RecordedEvent, get_logger
from views import View
from views._view import RowFold

__all__ = ["MAX_KEYS", "RowGroup", "row_groups"]

log = get_logger(__name__)

MAX_KEYS: Final = 1 << 18
"""Keys a group folds in memory before it loads them and its views go on event by event."""


class RowGroup:
    """Views rebuilt through one :class:`~views._view.RowFold`, from position 0.

    Args:
        fold: The fold its views' read models share.
        views: The views, each empty at position 0 and with a ``load_rows`` method.
        max_keys: Keys folded in memory before :attr:`full` says to load (default
            :data:`MAX_KEYS`).
    """

    def __init__(self, fold: RowFold, views: Sequence[View], max_keys: int | None = None) -> None:
        self.fold = fold
        self.views = list(views)
        self._states: dict[str, Any] = {}
        self._max_keys = MAX_KEYS if max_keys is None else max_keys
        self.folded = 0  # the position the fold has read up to

    @property
    def full(self) -> bool:
        """True once the group holds more keys than it may: load it and go on event by event."""
        return len(self._states) > self._max_keys

    def feed(
        self,
        store: ProjectionLog,
        records: Sequence[RecordedEvent],
        up_to: int,
        parked_positions: dict[str, set[int]] | None,
    ) -> None:
        """Fold ``records``, read up to ``up_to``; park the poison ones for every view."""
        for record, error in self.fold.fold(self._states, records):
            self._park(store, record, error, parked_positions)
        self.folded = up_to

    def _park(
        self,
        store: ProjectionLog,
        record: RecordedEvent,
        error: Exception,
        parked_positions: dict[str, set[int]] | None,
    ) -> None:
        for view in self.views:
            log.error("event_parked", view=view.name, position=record.position, error=repr(error))
            store.park(
                ParkedEvent(
                    view=view.name,
                    position=record.position,
                    error=repr(error),
                    attempts=1,  # a pure fold fails the same way every time
                    parked_at=time.time_ns(),
                )
            )
            if parked_positions is not None:
                parked_positions.setdefault(view.name, set()).add(record.position)

    def take_rows(self) -> list[Any]:
        """Return every key's row, in the order the keys first appeared; forget the states."""
        rows = list(self.fold.rows(self._states))
        self._states = {}
        return rows

    def load(self) -> None:
        """Have every view write each key's row and move to :attr:`folded`; forget the states."""
        rows = self.take_rows()
        for view in self.views:
            view.load_rows(rows, self.folded)  # type: ignore[attr-defined]  # see row_groups


def row_groups(views: Sequence[View]) -> list[RowGroup]:
    """Return the groups of ``views`` a rebuild folds by rows: empty views sharing a fold.

    A view joins a group when it has a ``row_fold`` (its read model declares one, see
    :class:`~views._view.RowFold`) and a ``load_rows`` method, and is at position 0; a group's
    views share their fold and their ``skip_unknown``.
    """
    groups: dict[tuple[int, bool], RowGroup] = {}
    for view in views:
        fold: RowFold | None = getattr(view, "row_fold", None)
        if fold is None or not callable(getattr(view, "load_rows", None)) or view.position():
            continue
        # One scan serves a group: its views must also agree on skipping undecodable records.
        key = (id(fold), view.skip_unknown)
        group = groups.get(key)
        if group is None:
            groups[key] = RowGroup(fold, [view])
        else:
            group.views.append(view)
    return list(groups.values())
