"""Rebuilding views: one scan of the log into fresh shadows, swapped in by their projectors.

:func:`rebuild_here` replays the log once into a shadow of every named view of this process
(:func:`~actors._replay.replay_many`) and has each view's projector adopt its shadow between two
of its batches; :func:`rebuild_split` runs a rebuild that spans a projection process (its views
there, the others here, one progress bar over both). :class:`RebuildReport` is what a rebuild
did. :class:`~actors._readside.ReadSide` owns the views, the projectors and the lock these run
with, and checks the names first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import msgspec
import pykka

from actors._projector import Projector, Swap
from actors._replay import replay_many
from store import ProjectionLog
from views import LmdbView, View

if TYPE_CHECKING:
    from actors._projection_process import ProjectionProcess

__all__ = ["RebuildReport", "rebuild_here", "rebuild_split"]

# Moved out of actors._readside, which kept growing past 400 lines: the rebuild procedure (its
# report, the one-scan replay into shadows and the swaps, the split across processes) is one
# concept. The code moved as it was, with the read side's state passed in instead of read off
# `self`; its log line ("rebuilt") is still written by the read side, under its logger's name.


class RebuildReport(msgspec.Struct, frozen=True):
    """What a rebuild did.

    Attributes:
        events: Events read from the log (one shared scan feeds every rebuilt view).
        seconds: Wall-clock time of the rebuild.
        views: Names of the rebuilt views.
    """

    events: int
    seconds: float
    views: tuple[str, ...] = ()

    @property
    def events_per_second(self) -> float:
        """Replay rate."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


def rebuild_here(
    store: ProjectionLog,
    views: Mapping[str, View],
    projectors: Mapping[str, pykka.ActorRef[Projector]],
    names: list[str],
    progress: Callable[[int, int], None] | None,
    *,
    lock: threading.Lock,
) -> RebuildReport:
    """Rebuild the views ``names`` of this process, one rebuild at a time (under ``lock``).

    Args:
        store: The log the views project.
        views: Every view of the read side, by name.
        projectors: The projector feeding each view, by view name.
        names: The views to rebuild (names of ``views``, all projected here).
        progress: Called with (events done, events total) as the replay advances.
        lock: The read side's rebuild lock.
    """
    started = time.perf_counter()
    with lock:
        head = store.head()
        shadows = [views[view_name].new_shadow() for view_name in names]

        def report(done: int) -> None:
            if progress is not None:
                progress(min(done, head), head)

        reparked: dict[str, set[int]] = {}
        # One scan of the log feeds every shadow: decoded once, not once per view.
        total_events = replay_many(store, shadows, head, report, parked_positions=reparked)
        for shadow in shadows:
            if isinstance(shadow, LmdbView):
                # Its buffered rows are written here, not by the adopt below on the projector's
                # thread: 50k rows take a fraction of a second the live views would wait for.
                shadow.write_out()
        for view_name, shadow in zip(names, shadows, strict=True):
            # The projector catches the shadow up with the live view and adopts it, between
            # two of its batches: queries see the old copy until that instant.
            projectors[view_name].ask(
                Swap(view_name, shadow, frozenset(reparked.get(view_name, ()))), timeout=600
            )
        if progress is not None:
            progress(head, head)
    seconds = time.perf_counter() - started
    return RebuildReport(events=total_events, seconds=seconds, views=tuple(names))


def rebuild_split(
    store: ProjectionLog,
    remote: ProjectionProcess,
    names: list[str],
    progress: Callable[[int, int], None] | None,
    rebuild_local: Callable[[list[str], Callable[[int, int], None] | None], RebuildReport],
) -> RebuildReport:
    """Rebuild ``names``: those ``remote`` keeps there, then the others here.

    Args:
        store: The log the views project.
        remote: The projection process.
        names: The views to rebuild, some of them the process's.
        progress: Called with (events done, events total) over both scans.
        rebuild_local: Rebuilds views of this process (the read side's, which logs it).
    """
    started = time.perf_counter()
    there = [view for view in names if view in remote.names]
    here = [view for view in names if view not in remote.names]
    scans = 2 if here else 1  # one scan there, then one here: one bar over both

    def scaled(first: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(first * total + done, scans * total)

    reports = [remote.rebuild(there, scaled(0))]
    if here:
        reports.append(rebuild_local(here, scaled(1)))
    head = store.head()
    if progress is not None:
        progress(head, head)
    seconds = time.perf_counter() - started
    # Each process scans the log once: the events of the report are those of one scan.
    events = max(report.events for report in reports)
    return RebuildReport(events=events, seconds=seconds, views=tuple(names))
