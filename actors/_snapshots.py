"""Snapshots of the views kept in memory: loaded at open, taken in the background and at close.

A memory view replays the whole log at open unless it has a snapshot: its state and the position
it is consistent with. Opening loads the snapshot (a snapshot of another read-model version, a
torn file, or one ahead of the log's head is discarded: replay from 0) and the projector replays
only the tail. Snapshots are taken every ``every`` events a view applies, on a background thread
(the view's lock is held only for a shallow copy; encoding and the fsynced write happen outside),
and once more at close for every view that moved since its last one.

A snapshot encodes the whole state, so its cost grows with the number of rows while the interval
in events stays fixed: at 200k orders the background snapshots took over a quarter of the GIL
(soak profile, issue 13). So the next background round (one thread snapshots every due view in
turn) also waits until the last round is a ``budget`` share of the time since it began (5% by
default): the snapshot work of all views together stays a bounded share of the process at any
size, and the tail replayed at the next open grows only as fast as a snapshot's own cost does.

A crash at any point leaves the previous snapshot or the new one, whole (atomic rename), and a
snapshot is never trusted beyond what the log holds, so nothing is skipped or applied twice.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from store import get_logger
from views import View
from views._chunked import Parts
from views._snapshot_file import read_snapshot_file, write_snapshot_file

__all__ = ["SNAPSHOT_BUDGET", "Snapshottable", "ViewSnapshots"]

SNAPSHOT_BUDGET = 0.05
"""The largest share of wall time the background snapshots of all views take (see the notes)."""

log = get_logger(__name__)


@runtime_checkable
class Snapshottable(Protocol):
    """A view that can snapshot its state and restore it (the memory views)."""

    name: str

    def position(self) -> int:
        """The view's checkpoint."""
        ...

    def snapshot_parts(self) -> tuple[int, Parts]:
        """Return (position, framed state in parts) of a consistent state."""
        ...

    def restore(self, data: bytes) -> int | None:
        """Load a snapshot into the empty view; the position, or None if discarded."""
        ...

    def clear(self) -> None:
        """Drop every row; back to position 0."""
        ...


class ViewSnapshots:
    """Loads, schedules and writes the snapshots of the snapshottable views.

    Args:
        directory: Where the snapshot files live (``<data>/views/snapshots``).
        views: Every view; the snapshottable ones are handled.
        every: Events a view applies between two background snapshots (0: only at close).
        budget: The largest share of wall time the background snapshots may take, in (0, 1]:
            after a round (failed snapshots included) that took ``t`` seconds, the next waits
            ``t * (1 / budget - 1)`` seconds as well as ``every`` events.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        directory: pathlib.Path,
        views: Sequence[View],
        every: int,
        *,
        budget: float = SNAPSHOT_BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < budget <= 1:
            raise ValueError(f"snapshot budget must be in (0, 1], not {budget!r}")
        self._directory = directory
        self._views: dict[str, Snapshottable] = {
            view.name: view for view in views if isinstance(view, Snapshottable)
        }
        self._every = every
        self._saved: dict[str, int] = dict.fromkeys(self._views, 0)
        self._budget = budget
        self._clock = clock
        self._not_before = 0.0  # no background round before this clock reading (the budget)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False
        self.written = 0  # snapshots written, for tests and status

    def restore_all(self, head: int) -> dict[str, int]:
        """Load every view's snapshot (views must be empty); return the positions loaded."""
        loaded: dict[str, int] = {}
        for name, view in self._views.items():
            started = time.perf_counter()
            data = read_snapshot_file(self._directory, name)
            if data is None:
                continue
            position = view.restore(data)
            if position is None:
                continue
            if position > head:
                # The log lost commits this snapshot had seen (async durability, OS crash).
                view.clear()
                log.warning(
                    "view_snapshot_discarded",
                    view=name,
                    reason="ahead of the log",
                    position=position,
                    head=head,
                )
                continue
            loaded[name] = self._saved[name] = position
            log.info(
                "view_snapshot_loaded",
                view=name,
                position=position,
                seconds=round(time.perf_counter() - started, 4),
            )
        return loaded

    def on_batch(self, advanced: dict[str, int]) -> None:
        """Projector thread, after a batch: start a background snapshot when one is due."""
        if not self._every:
            return
        if self._clock() < self._not_before:
            return
        due = [
            name
            for name, position in advanced.items()
            if name in self._views and position - self._saved[name] >= self._every
        ]
        if not due:
            return
        with self._lock:
            if self._closed or (self._worker is not None and self._worker.is_alive()):
                return
            self._worker = threading.Thread(
                target=self._background, args=(due,), name="view-snapshots", daemon=True
            )
            self._worker.start()

    def _background(self, names: Sequence[str]) -> None:
        started = self._clock()
        try:
            self._save(names)
        finally:
            # Failed snapshots pause too: retrying one that keeps failing at every batch would
            # spend the whole process encoding.
            finished = self._clock()
            self._not_before = finished + (finished - started) * (1 / self._budget - 1)

    def _save(self, names: Sequence[str]) -> None:
        for name in names:
            view = self._views[name]
            started = self._clock()
            try:
                position, data = view.snapshot_parts()
                if position <= self._saved[name]:
                    continue
                path = write_snapshot_file(self._directory, name, data)
            except Exception:  # a failed snapshot only costs replay time at the next open
                log.exception("view_snapshot_failed", view=name)
                continue
            self._saved[name] = position
            self.written += 1
            log.debug(
                "view_snapshot_written",
                view=name,
                position=position,
                bytes=path.stat().st_size,  # compressed (see views._snapshot_file)
                encoded_bytes=sum(len(part) for part in data),
                seconds=round(self._clock() - started, 4),
            )

    def close(self, timeout: float = 60.0) -> None:
        """Wait for a background snapshot, then snapshot every view that moved (at close)."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            worker.join(timeout)
        moved = [name for name, view in self._views.items() if view.position() > self._saved[name]]
        self._save(moved)
