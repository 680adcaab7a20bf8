"""Projector actors: each follows the log from its view's checkpoint and keeps the view current.

A projector catches up in batches, one batch per message so that swaps, retries and stops
interleave with a long replay, then stays live on the writer's head notifications. A view writes
its rows and its checkpoint together (LMDB: one transaction), so nothing is skipped or applied
twice, also across a crash.

A poison event (the view's apply raises) is retried a few times with backoff, then parked with
its error in the store; the view moves on. An undecodable record stops the view loudly
(:class:`CorruptLog`) unless it opted in to skipping such records, which are then counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pykka
import structlog

from actors._messages import HeadAdvanced
from actors._tail import EventTail
from domain.errors import CorruptLog
from store import EventStore, ParkedEvent, RecordedEvent
from views import View

__all__ = [
    "CatchUp",
    "Progress",
    "Projector",
    "RetryParked",
    "Swap",
    "ViewAdvanced",
    "ViewStatus",
    "replay_into",
]

log = structlog.get_logger(__name__)

RETRIES = 3
BACKOFF = 0.005  # seconds, doubled per attempt: a poison event costs the view ~35 ms at most


class ViewStatus(msgspec.Struct, frozen=True):
    """One view's progress.

    Attributes:
        position: Last position the view has applied.
        lag_events: Events committed but not applied yet.
        lag_seconds: How long the view has been behind (0 when caught up).
        parked: Poison events parked for this view.
        skipped: Undecodable events skipped (views that opted in only).
        error: Why the view is stalled (a corrupt record), or "".
        backend: ``"memory"`` or ``"lmdb"``.
    """

    position: int
    lag_events: int
    lag_seconds: float
    parked: int = 0
    skipped: int = 0
    error: str = ""
    backend: str = ""


class CatchUp(msgspec.Struct, frozen=True):
    """Projector -> itself: apply the next batch if behind."""


class Swap(msgspec.Struct, frozen=True):
    """ReadSide -> projector: catch ``shadow`` up with the live view, then adopt it.

    ``reparked`` holds the positions the rebuild parked again: every other parked event of the
    view, up to the adopted position, applied fine in the new copy and is unparked.
    """

    shadow: Any
    reparked: frozenset[int] = frozenset()


class RetryParked(msgspec.Struct, frozen=True):
    """Engine -> projector: apply a parked event again."""

    position: int


class ViewAdvanced(msgspec.Struct, frozen=True):
    """Projector -> router: a view reached ``position``."""

    view: str
    position: int


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
        except Exception as failure:  # noqa: BLE001 - a poison event must not stop the view
            error = failure
            time.sleep(delay)  # backoff before retrying a possibly transient failure
            delay *= 2
        else:
            return None
    return error


def apply_safely(
    store: EventStore,
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


def store_reader(store: EventStore) -> Reader:
    """Return a :data:`Reader` that decodes straight from the store (rebuilds, swaps)."""

    def read(start: int, limit: int) -> list[RecordedEvent]:
        return next(store.read_all(start, limit), [])

    return read


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
    return events, (events[-1].position if events else start - 1), 0


def replay_into(
    store: EventStore,
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
    done = 0
    read = store_reader(store)
    while view.position() < until:
        start = view.position() + 1
        events, up_to, skipped = read_batch(read, view, start, min(batch_size, until - start + 1))
        if up_to < start:
            break
        apply_safely(store, view, events, up_to, parked_positions)
        done += len(events) + skipped
        if progress is not None:
            progress(done)
    return done


class Progress:
    """A projector's progress, shared with the engine (plain attribute reads: thread-safe)."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.behind_since: float | None = None
        self.skipped = 0
        self.error = ""

    def status(self, head: int) -> ViewStatus:
        """Return the view's progress against ``head``."""
        position = self.view.position()
        behind = self.behind_since
        lag_seconds = 0.0
        if position < head and behind is not None:
            lag_seconds = max(0.0, time.monotonic() - behind)
        return ViewStatus(
            position=position,
            lag_events=max(0, head - position),
            lag_seconds=round(lag_seconds, 6),
            skipped=self.skipped,
            error=self.error,
            backend=self.view.backend,
        )


class Projector(pykka.ThreadingActor):
    """Keeps one view current with the log.

    Args:
        store: The event store.
        progress: The view it feeds, and where it reports its progress.
        router: Told :class:`ViewAdvanced` after every batch (read-your-writes waits on it).
        batch_size: Events per catch-up batch.
        tail: The shared decoded events (default: decode from the store itself).
    """

    use_daemon_thread = True

    def __init__(
        self,
        store: EventStore,
        progress: Progress,
        router: pykka.ActorRef[Any] | None,
        batch_size: int = 2000,
        tail: EventTail | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._read: Reader = tail.read if tail is not None else store_reader(store)
        self.view = progress.view
        self._progress = progress
        self._router = router
        self._batch_size = batch_size
        self._head = store.head()
        self._scheduled = False

    def on_start(self) -> None:
        """Start catching up from the view's checkpoint."""
        if self.view.position() < self._head:
            # Behind from the start (a memory view replays from 0): lag_seconds must show it,
            # not wait for the next commit's HeadAdvanced to start the clock.
            self._progress.behind_since = time.monotonic()
        self._schedule()

    def on_receive(self, message: Any) -> Any:
        """Handle head notifications, catch-up steps, swaps and parked retries."""
        if isinstance(message, HeadAdvanced):
            if message.head > self._head:
                self._head = message.head
                if self._progress.behind_since is None:
                    self._progress.behind_since = time.monotonic()
            self._schedule()
        elif isinstance(message, CatchUp):
            self._scheduled = False
            try:
                self._step()
            except Exception as error:
                # The view cannot even move its checkpoint (its storage fails): an escaping
                # exception would kill this actor unseen, with status() showing no error and
                # read-your-writes queries timing out for no visible reason.
                self._progress.error = f"{type(error).__name__}: {error}"
                log.exception("view_stalled", view=self.view.name, position=self.view.position())
        elif isinstance(message, Swap):
            return self._swap(message)
        elif isinstance(message, RetryParked):
            return self._retry(message.position)
        return None

    def _schedule(self) -> None:
        if not self._scheduled and not self._progress.error:
            self._scheduled = True
            self.actor_ref.tell(CatchUp())

    def _step(self) -> None:
        view = self.view
        start = view.position() + 1
        head = max(self._head, self._store.head())
        self._head = head
        if start > head:
            self._progress.behind_since = None
            return
        try:
            events, up_to, skipped = read_batch(self._read, view, start, self._batch_size)
        except CorruptLog as corrupt:
            # Name the error class: status readers match on it, and the message has the position.
            self._progress.error = f"{type(corrupt).__name__}: {corrupt}"
            log.exception("view_stalled", view=view.name, position=corrupt.position)
            return
        self._progress.skipped += skipped
        if up_to >= start:
            apply_safely(self._store, view, events, up_to)
            self._advanced()
        if view.position() < head:
            self._schedule()
        else:
            self._progress.behind_since = None

    def _swap(self, message: Swap) -> int:
        reparked = set(message.reparked)
        replay_into(self._store, message.shadow, self.view.position(), parked_positions=reparked)
        self.view.adopt(message.shadow)
        position = self.view.position()
        # A parked event the new copy applied fine must not stay parked: a later retry_parked
        # would apply it a second time (double counting). Done here, between two batches, so
        # no live apply can park anything meanwhile.
        for parked in self._store.parked(self.view.name):
            if parked.position <= position and parked.position not in reparked:
                self._store.unpark(self.view.name, parked.position)
                log.info("parked_cleared_by_rebuild", view=self.view.name, position=parked.position)
        self._advanced()
        return position

    def _advanced(self) -> None:
        if self._router is not None:
            self._router.tell(ViewAdvanced(self.view.name, self.view.position()))

    def _retry(self, position: int) -> bool:
        parked = [p for p in self._store.parked(self.view.name) if p.position == position]
        if not parked:
            return False
        events = next(self._store.read_all(position, 1), [])
        if not events or events[0].position != position:
            return False
        try:
            self.view.reapply(events[0])
        except Exception as error:  # noqa: BLE001 - still poison: it stays parked, with the new error
            # Contract: retry_parked returns False unless it applied and unparked. Raising the
            # read model's error out of the ask would also hide that the event is still parked.
            log.warning("parked_retry_failed", view=self.view.name, position=position)
            self._store.park(
                msgspec.structs.replace(
                    parked[0],
                    error=repr(error),
                    attempts=parked[0].attempts + 1,
                    parked_at=time.time_ns(),
                )
            )
            return False
        self._store.unpark(self.view.name, position)
        return True
