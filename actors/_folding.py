"""A projector's views catching up from position 0 through their row fold, a batch per step.

A view at position 0 has no rows yet: a data directory opened for the first time, a memory view
without a usable snapshot (another read-model version, none written yet), an LMDB views
environment rebuilt after damage. Its catch-up is then a rebuild, and goes as one: the views
sharing a :class:`~views._view.RowFold` fold the log into one state per key (see
:mod:`actors._row_groups`) and each writes every row once, when the fold has reached the head.
The projector folds one batch per step, so swaps, retries, stops and live head notifications
still interleave; the views stay at position 0 (a read-your-writes query waits) until they load,
then go on event by event.

Anything going wrong while a group folds or loads (a corrupt record, the storage failing) ends
the group: its views, empty again, catch up event by event and meet the error there, where the
projector's usual handling (stall, retry, park) applies to each of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors._replay import Reader, read_batch
from actors._row_groups import RowGroup, row_groups
from store import ProjectionLog, get_logger
from views import View

__all__ = ["Folding"]

log = get_logger(__name__)


class Folding:
    """The groups of one projector's views still folding from position 0.

    Args:
        views: The projector's views; those at position 0 that share a row fold are grouped.
    """

    def __init__(self, views: Sequence[View]) -> None:
        self._groups = row_groups(views)

    def positions(self) -> dict[str, int]:
        """Return, per view still folding, the position its group has folded up to."""
        return {view.name: group.folded for group in self._groups for view in group.views}

    def names(self) -> frozenset[str]:
        """Return the names of the views still folding (not to be stepped event by event)."""
        return frozenset(view.name for group in self._groups for view in group.views)

    def step(
        self, store: ProjectionLog, read: Reader, head: int, batch_size: int
    ) -> tuple[list[View], dict[str, int]]:
        """Fold the next batch of every group; load those at ``head``.

        Returns:
            The views loaded now, and per view the undecodable records it skipped now (views
            with ``skip_unknown``; counted in their status as a catch-up event by event does).
        """
        loaded: list[View] = []
        skipped: dict[str, int] = {}
        for group in list(self._groups):
            try:
                folded, passed = self._fold(group, store, read, batch_size)
                if passed:
                    skipped.update(dict.fromkeys((view.name for view in group.views), passed))
                if folded >= head or group.full:
                    loaded += self._load(group)
            except Exception as error:  # noqa: BLE001 - the views go on event by event and meet it
                log.warning(
                    "view_fold_abandoned",
                    views=[view.name for view in group.views],
                    position=group.folded,
                    error=repr(error),
                )
                self._end(group)
        return loaded, skipped

    def drop(self, name: str) -> None:
        """Take the view ``name`` out of its group (a rebuilt copy replaces it)."""
        for group in list(self._groups):  # _end removes from the list
            group.views = [view for view in group.views if view.name != name]
            if not group.views:
                self._end(group)

    def _fold(
        self, group: RowGroup, store: ProjectionLog, read: Reader, batch_size: int
    ) -> tuple[int, int]:
        """Fold the group's next batch; return how far it has folded and records skipped."""
        start = group.folded + 1
        events, up_to, skipped = read_batch(read, group.views[0], start, batch_size)
        if up_to >= start:
            group.feed(store, events, up_to, None)
        return group.folded, skipped

    def _load(self, group: RowGroup) -> list[View]:
        """Have the group's views write their rows; a view that fails is emptied again."""
        self._end(group)
        rows, up_to = group.take_rows(), group.folded
        loaded: list[View] = []
        for view in group.views:
            try:
                view.load_rows(rows, up_to)  # type: ignore[attr-defined]  # see row_groups
            except Exception as error:  # noqa: BLE001 - emptied, it catches up event by event
                log.warning("view_fold_load_failed", view=view.name, error=repr(error))
                view.clear()
            else:
                loaded.append(view)
        return loaded

    def _end(self, group: RowGroup) -> None:
        if group in self._groups:
            self._groups.remove(group)
