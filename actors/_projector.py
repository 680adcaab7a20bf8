"""The projector actor: follows the log and keeps every view current from its own checkpoint.

One actor (one thread) feeds all the views of an engine. Per commit that is one thread woken
instead of one per view: measured on 2 cores, the wake-ups and GIL hand-offs of four projector
threads (plus one router message per view) cost more than the views' own work, and sat on the
command path. Each view keeps its own checkpoint, its own poison parking and its own errors; a
view that is stalled (a corrupt record) is skipped while the others go on.

The projector catches up in batches, one batch per message so that swaps, retries and stops
interleave with a long replay, then stays live on the writer's head notifications. Batches come
decoded from the shared :class:`~actors._tail.EventTail`. A view writes its rows and its
checkpoint together (LMDB: one transaction), so nothing is skipped or applied twice, also across
a crash. Memory views are snapshotted in the background every ``snapshot_every`` events and at
close (see :class:`~actors._snapshots.ViewSnapshots`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
import pykka

from actors._messages import HeadAdvanced
from actors._replay import Reader, apply_safely, read_batch, replay_into, store_reader
from actors._tail import EventTail
from domain.errors import CorruptLog
from store import EventStore, get_logger
from views import View
from views._memory_codec import SnapshotRowsError

__all__ = [
    "CatchUp",
    "Progress",
    "Projector",
    "RetryParked",
    "Swap",
    "ViewAdvanced",
    "ViewStatus",
]

log = get_logger(__name__)


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
    """ReadSide -> projector: catch ``shadow`` up with the live view ``view``, then adopt it.

    ``reparked`` holds the positions the rebuild parked again: every other parked event of the
    view, up to the adopted position, applied fine in the new copy and is unparked.
    """

    view: str
    shadow: Any
    reparked: frozenset[int] = frozenset()


class RetryParked(msgspec.Struct, frozen=True):
    """Engine -> projector: apply a parked event of ``view`` again."""

    view: str
    position: int


class ViewAdvanced(msgspec.Struct, frozen=True):
    """Projector -> router: views reached these positions (view name -> position)."""

    positions: dict[str, int]


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
    """Keeps every view current with the log.

    Args:
        store: The event store.
        progresses: The views it feeds, each with where it reports its progress.
        router: Told :class:`ViewAdvanced` after every batch (read-your-writes waits on it).
        batch_size: Events per catch-up batch.
        tail: The shared decoded events (default: decode from the store itself).
        on_batch: Called with the views that advanced after each batch (snapshot scheduling).
    """

    use_daemon_thread = True

    def __init__(
        self,
        store: EventStore,
        progresses: Sequence[Progress],
        router: pykka.ActorRef[Any] | None,
        *,
        batch_size: int = 2000,
        tail: EventTail | None = None,
        on_batch: Any = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._read: Reader = tail.read if tail is not None else store_reader(store)
        self._progress = {progress.view.name: progress for progress in progresses}
        self._router = router
        self._batch_size = batch_size
        self._on_batch = on_batch
        self._head = store.head()
        self._scheduled = False

    def on_start(self) -> None:
        """Start catching up from every view's checkpoint."""
        now = time.monotonic()
        for progress in self._progress.values():
            if progress.view.position() < self._head:
                # Behind from the start: lag_seconds must show it, not wait for the next commit.
                progress.behind_since = now
        self._schedule()

    def on_receive(self, message: Any) -> Any:
        """Handle head notifications, catch-up steps, swaps and parked retries."""
        if isinstance(message, HeadAdvanced):
            if message.head > self._head:
                self._head = message.head
                now = time.monotonic()
                for progress in self._progress.values():
                    if progress.behind_since is None:
                        progress.behind_since = now
            self._schedule()
        elif isinstance(message, CatchUp):
            self._scheduled = False
            self._step()
        elif isinstance(message, Swap):
            return self._swap(message)
        elif isinstance(message, RetryParked):
            return self._retry(message.view, message.position)
        return None

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.actor_ref.tell(CatchUp())

    def _step(self) -> None:
        head = max(self._head, self._store.head())
        self._head = head
        advanced: dict[str, int] = {}
        behind = False
        for name, progress in self._progress.items():
            if progress.error:
                continue
            try:
                if self._step_view(progress, head):
                    advanced[name] = progress.view.position()
            except Exception as error:
                # The view cannot even move its checkpoint (its storage fails): without this it
                # would stop unseen, read-your-writes queries timing out for no visible reason.
                progress.error = f"{type(error).__name__}: {error}"
                log.exception("view_stalled", view=name, position=progress.view.position())
                continue
            if progress.view.position() < head:
                behind = True
            else:
                progress.behind_since = None
        if advanced:
            if self._router is not None:
                self._router.tell(ViewAdvanced(advanced))
            if self._on_batch is not None:
                self._on_batch(advanced)
        if behind:
            self._schedule()

    def _step_view(self, progress: Progress, head: int) -> bool:
        """Apply the next batch to one view; return whether it advanced."""
        view = progress.view
        start = view.position() + 1
        if start > head:
            return False
        try:
            events, up_to, skipped = read_batch(self._read, view, start, self._batch_size)
        except CorruptLog as corrupt:
            # Name the error class: status readers match on it, and the message has the position.
            progress.error = f"{type(corrupt).__name__}: {corrupt}"
            log.exception("view_stalled", view=view.name, position=corrupt.position)
            return False
        progress.skipped += skipped
        if up_to < start:
            return False
        try:
            apply_safely(self._store, view, events, up_to)
        except SnapshotRowsError as error:
            # The snapshot it was restored from does not fit this read model (a changed row type
            # under the same version): drop it and replay the view from the log.
            log.warning("view_snapshot_unusable", view=view.name, error=str(error))
            view.clear()
        return True

    def _swap(self, message: Swap) -> int:
        progress = self._progress[message.view]
        view = progress.view
        reparked = set(message.reparked)
        replay_into(self._store, message.shadow, view.position(), parked_positions=reparked)
        view.adopt(message.shadow)
        position = view.position()
        # A parked event the new copy applied fine must not stay parked: a later retry_parked
        # would apply it a second time (double counting). Done here, between two batches, so
        # no live apply can park anything meanwhile.
        for parked in self._store.parked(view.name):
            if parked.position <= position and parked.position not in reparked:
                self._store.unpark(view.name, parked.position)
                log.info("parked_cleared_by_rebuild", view=view.name, position=parked.position)
        if self._router is not None:
            self._router.tell(ViewAdvanced({view.name: position}))
        return position

    def _retry(self, name: str, position: int) -> bool:
        view = self._progress[name].view
        parked = [p for p in self._store.parked(name) if p.position == position]
        if not parked:
            return False
        events = next(self._store.read_all(position, 1), [])
        if not events or events[0].position != position:
            return False
        try:
            view.reapply(events[0])
        except Exception as error:  # noqa: BLE001 - still poison: it stays parked, with the new error
            # Contract: retry_parked returns False unless it applied and unparked. Raising the
            # read model's error out of the ask would also hide that the event is still parked.
            log.warning("parked_retry_failed", view=name, position=position)
            self._store.park(
                msgspec.structs.replace(
                    parked[0],
                    error=repr(error),
                    attempts=parked[0].attempts + 1,
                    parked_at=time.time_ns(),
                )
            )
            return False
        self._store.unpark(name, position)
        return True
