"""Replaying the log into views: safe batch application, poison parking, shared scans.

Used by the projector (live and catch-up) and by rebuild. A batch is applied whole when it can be;
when the view's apply raises, the batch is applied event by event so the poison event is found,
retried a few times with backoff (it may be transient), then parked with its error in the store
and skipped: the view moves on and ``status`` shows the parked event. Nothing is skipped silently.

A storage failure (:data:`STORAGE_ERRORS`: the views environment or the disk failing) is not the
event's fault: parking it would leave a healthy event out of the view. It propagates instead, and
the projector retries the whole view later (see :mod:`actors._backoff`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import lmdb
import msgspec

from actors._row_groups import RowGroup, row_groups
from domain.errors import CorruptLog, StorageError
from store import ParkedEvent, ProjectionLog, ReadBatch, RecordedEvent, get_logger
from views import View
from views._memory_codec import SnapshotRowsError

__all__ = [
    "RETRIES",
    "STORAGE_ERRORS",
    "Reader",
    "adopt_shadow",
    "apply_safely",
    "handled_tags",
    "read_batch",
    "replay_into",
    "replay_many",
    "retry_parked",
    "store_reader",
]

log = get_logger(__name__)

RETRIES = 3
BACKOFF = 0.005  # seconds, doubled per attempt: a poison event costs the view ~35 ms at most

STORAGE_ERRORS: tuple[type[Exception], ...] = (lmdb.Error, OSError, StorageError)
"""Errors of a view's storage, not of the event it applies: never parked, they propagate."""

_NOT_POISON: tuple[type[Exception], ...] = (SnapshotRowsError, *STORAGE_ERRORS)


def _filter(view: View, events: Sequence[RecordedEvent]) -> list[RecordedEvent]:
    tags = view.tags
    if tags is None:
        return list(events)
    return [event for event in events if event.tag in tags]


def _apply_one_with_retries(view: View, event: RecordedEvent) -> Exception | None:
    delay = BACKOFF
    error: Exception | None = None
    for _ in range(RETRIES):
        try:
            view.apply([event], event.position)
        except _NOT_POISON:
            raise
        except Exception as failure:  # noqa: BLE001 - a poison event must not stop the view
            error = failure
            time.sleep(delay)  # backoff before retrying a possibly transient failure
            delay *= 2
        else:
            return None
    return error


def apply_safely(
    store: ProjectionLog,
    view: View,
    events: Sequence[RecordedEvent],
    up_to: int,
    parked_positions: set[int] | None = None,
) -> int:
    """Apply a batch; on failure apply event by event, parking poison ones. Returns parked.

    The positions parked are added to ``parked_positions`` when given (a rebuild collects them).
    """
    try:
        view.apply(_filter(view, events), up_to)
    except _NOT_POISON:
        raise  # the view's restored state or its storage is at fault, not an event
    except Exception:  # noqa: BLE001 - fall back to one event at a time to isolate the poison
        log.warning("view_batch_failed", view=view.name, up_to=up_to)
    else:
        return 0
    parked = 0
    for event in _filter(view, events):
        if event.position <= view.position():
            continue
        error = _apply_one_with_retries(view, event)
        if error is not None:
            parked += 1
            if parked_positions is not None:
                parked_positions.add(event.position)
            log.error("event_parked", view=view.name, position=event.position, error=repr(error))
            store.park(
                ParkedEvent(
                    view=view.name,
                    position=event.position,
                    error=repr(error),
                    attempts=RETRIES,
                    parked_at=time.time_ns(),
                )
            )
            view.apply([], event.position)
    if view.position() < up_to:
        view.apply([], up_to)
    return parked


Reader = Callable[[int, int], list[RecordedEvent]]
"""Returns up to ``limit`` decoded records from ``start`` (an :class:`EventTail`'s ``read``, or
:func:`store_reader`); raises :class:`CorruptLog` for a bad record."""


def store_reader(store: ProjectionLog, tags: frozenset[str] | None = None) -> Reader:
    """Return a :data:`Reader` that decodes straight from the store (rebuilds, swaps).

    With ``tags``, only records of those tags are decoded and returned; each batch is then a
    :class:`~store.ReadBatch` telling how far it read (:func:`read_batch` uses it).
    """

    def read(start: int, limit: int) -> list[RecordedEvent]:
        return next(store.read_all(start, limit, tags=tags), [])

    return read


def handled_tags(views: Sequence[View]) -> frozenset[str] | None:
    """Return every tag some view of ``views`` handles; None if one of them takes every event."""
    tags: set[str] = set()
    for view in views:
        if view.tags is None:
            return None
        tags |= view.tags
    return frozenset(tags)


def read_batch(
    read: Reader, view: View, start: int, size: int
) -> tuple[list[RecordedEvent], int, int]:
    """Read the next batch from ``start``: (events, up_to, skipped); CorruptLog if stuck."""
    try:
        events = read(start, size)
    except CorruptLog as corrupt:
        if corrupt.position > start:
            # Apply the good prefix first; the bad record is met again at the next batch.
            events = read(start, corrupt.position - start)
            return events, corrupt.position - 1, 0
        if not view.skip_unknown:
            raise
        log.warning("event_skipped", view=view.name, position=corrupt.position)
        return [], corrupt.position, 1
    if isinstance(events, ReadBatch):
        return events, events.end, 0  # records of other tags may follow the last one
    return events, (events[-1].position if events else start - 1), 0


def replay_into(
    store: ProjectionLog,
    view: View,
    until: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 2000,
    *,
    parked_positions: set[int] | None = None,
) -> int:
    """Apply the log to ``view`` from its position up to ``until``; return events read.

    Positions parked on the way are added to ``parked_positions`` when given.
    """
    parked = None if parked_positions is None else {view.name: parked_positions}
    return replay_many(store, [view], until, progress, batch_size, parked_positions=parked)


def _apply_behind(
    store: ProjectionLog,
    behind: Sequence[View],
    events: Sequence[RecordedEvent],
    start: int,
    up_to: int,
    *,
    parked_positions: dict[str, set[int]] | None,
) -> None:
    """Apply a batch read from ``start`` up to ``up_to`` to each view still below ``up_to``."""
    for view in behind:
        if view.position() >= up_to:
            continue
        fresh = (
            events
            if view.position() < start
            else [event for event in events if event.position > view.position()]
        )
        reparked = (
            None if parked_positions is None else parked_positions.setdefault(view.name, set())
        )
        apply_safely(store, view, fresh, up_to, reparked)


def _feed_groups(
    store: ProjectionLog,
    groups: list[RowGroup],
    plain: list[View],
    fresh: Sequence[RecordedEvent],
    up_to: int,
    *,
    parked_positions: dict[str, set[int]] | None,
) -> int:
    """Fold ``fresh`` into every group; a group grown too big loads and joins ``plain``.

    Returns ``up_to``, the position the groups have now folded up to.
    """
    for group in groups:
        group.feed(store, fresh, up_to, parked_positions)
    for group in [group for group in groups if group.full]:
        # Too many keys to hold: write them, then go on event by event.
        group.load()
        groups.remove(group)
        plain.extend(group.views)
    return up_to


def replay_many(
    store: ProjectionLog,
    views: Sequence[View],
    until: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 2000,
    *,
    parked_positions: dict[str, set[int]] | None = None,
) -> int:
    """Apply the log up to ``until`` to every view of ``views`` in ONE scan; return events read.

    Each batch is read and decoded once and handed to every view still behind (a rebuild of all
    views costs one decode of the log, not one per view). Views may start at different
    positions; each gets only what it lacks. Empty views sharing a row fold (the order views)
    fold the scan into one row per key and write each row once at the end (see
    :mod:`actors._row_groups`). Positions parked on the way are collected per view in
    ``parked_positions`` when given.
    """
    # Only the tags these views handle are decoded: a view skips the others anyway.
    read = store_reader(store, handled_tags(views))
    groups = row_groups(views)
    grouped = {id(view) for group in groups for view in group.views}
    plain = [view for view in views if id(view) not in grouped]
    folded = 0  # the position the groups have folded up to
    done = 0
    while True:
        behind = [view for view in plain if view.position() < until]
        starts = [view.position() + 1 for view in behind]
        if groups and folded < until:
            starts.append(folded + 1)
        if not starts:
            break
        start = min(starts)
        leader = next((view for view in behind if view.position() + 1 == start), None)
        events, up_to, _ = read_batch(
            read, leader or groups[0].views[0], start, min(batch_size, until - start + 1)
        )
        if up_to < start:
            break
        _apply_behind(store, behind, events, start, up_to, parked_positions=parked_positions)
        if groups and folded < up_to:
            fresh = events if folded < start else [e for e in events if e.position > folded]
            folded = _feed_groups(
                store, groups, plain, fresh, up_to, parked_positions=parked_positions
            )
        done += up_to - start + 1  # positions passed: records of other tags count too
        if progress is not None:
            progress(done)
    for group in groups:
        group.load()
    return done


def adopt_shadow(store: ProjectionLog, view: View, shadow: View, reparked: set[int]) -> int:
    """Catch ``shadow`` (a rebuilt copy) up with ``view``, have ``view`` adopt it; return where.

    A parked event the new copy applied fine is unparked: a later ``retry_parked`` would apply
    it a second time (double counting). The projector calls it between two of its batches, so
    no live apply can park anything meanwhile.

    Args:
        store: The log.
        view: The live view.
        shadow: Its rebuilt copy.
        reparked: The positions the rebuild parked for this view (more are added here).
    """
    replay_into(store, shadow, view.position(), parked_positions=reparked)
    view.adopt(shadow)
    position = view.position()
    for parked in store.parked(view.name):
        if parked.position <= position and parked.position not in reparked:
            store.unpark(view.name, parked.position)
            log.info("parked_cleared_by_rebuild", view=view.name, position=parked.position)
    return position


def retry_parked(store: ProjectionLog, view: View, position: int) -> bool:
    """Apply the event parked for ``view`` at ``position`` again; True if it applied now.

    Still poison, it stays parked with the new error (and one more attempt); False then, as
    when nothing is parked there.
    """
    parked = [p for p in store.parked(view.name) if p.position == position]
    if not parked:
        return False
    events = next(store.read_all(position, 1), [])
    if not events or events[0].position != position:
        return False
    try:
        view.reapply(events[0])
    except Exception as error:  # noqa: BLE001 - still poison: it stays parked, with the new error
        # Contract: retry_parked returns False unless it applied and unparked. Raising the
        # read model's error out of the ask would also hide that the event is still parked.
        log.warning("parked_retry_failed", view=view.name, position=position)
        store.park(
            msgspec.structs.replace(
                parked[0],
                error=repr(error),
                attempts=parked[0].attempts + 1,
                parked_at=time.time_ns(),
            )
        )
        return False
    store.unpark(view.name, position)
    return True
