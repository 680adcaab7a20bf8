"""The projector actor: follows the log and keeps every view current from its own checkpoint.

One actor (one thread) feeds all the views of an engine. Per commit that is one thread woken
instead of one per view: measured on 2 cores, the wake-ups and GIL hand-offs of four projector
threads (plus one router message per view) cost more than the views' own work, and sat on the
command path. Each view keeps its own checkpoint, its own poison parking and its own errors: a
view whose storage fails is retried later by itself (capped exponential backoff, see
:mod:`actors._backoff`) and a view stalled on a corrupt record waits for ``retry_view``, while
the other views go on.

The projector catches up in batches, one batch per message so that swaps, retries and stops
interleave with a long replay, then stays live on the writer's head notifications. Batches come
decoded from the shared :class:`~actors._tail.EventTail`. A view writes its rows and its
checkpoint together (LMDB: one transaction), so nothing is skipped or applied twice, also across
a crash. Memory views are snapshotted in the background every ``snapshot_every`` events and at
close (see :class:`~actors._snapshots.ViewSnapshots`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from actors._backoff import VIEW_RETRY, Backoff, RetryTimers
from actors._folding import Folding
from actors._lag_bound import LagBound
from actors._messages import (
    BoundLag,
    CatchUp,
    HeadAdvanced,
    RetryDue,
    RetryParked,
    RetryView,
    Swap,
    Teller,
    ViewAdvanced,
)
from actors._progress import Failure, Progress, ViewStatus
from actors._replay import (
    Reader,
    adopt_shadow,
    apply_safely,
    handled_tags,
    read_batch,
    retry_parked,
    store_reader,
)
from actors._router_link import RouterLink
from actors._supervision import FaultSeam, Supervised
from actors._tail import EventTail
from domain.errors import CorruptLog
from store import ProjectionLog, get_logger
from views._memory_codec import SnapshotRowsError

__all__ = [
    "CatchUp",
    "Progress",
    "Projector",
    "RetryDue",
    "RetryParked",
    "RetryView",
    "Swap",
    "Teller",
    "ViewAdvanced",
    "ViewStatus",
]

log = get_logger(__name__)

# The projector's own retry timer (resuming after a handler failure), beside the views' timers:
# no view can have this name.
_RESUME = "\x00resume"


# See Projector._yield_to_commands.
_SMALL_BACKLOG = 16  # events behind the head: at most this many, the projector yields first
_YIELD_SECONDS = 0.0001


class Projector(Supervised, pykka.ThreadingActor):
    """Keeps every view current with the log.

    Supervision: *resume*. A view's own failures never reach the actor (each view retries with
    backoff, or stalls on a corrupt record). Anything else that escapes a handler (the log's
    head, a seam) fails only the asker of that message, if any; the projector goes on and
    schedules its next catch-up after the same capped backoff, so no view is left unscheduled.

    Args:
        store: The event store.
        progresses: The views it feeds, each with where it reports its progress.
        router: Told :class:`ViewAdvanced` after every batch (read-your-writes waits on it).
        batch_size: Events per catch-up batch.
        tail: The shared decoded events (default: decode from the store itself).
        on_batch: Called with the views that advanced after each batch (snapshot scheduling).
        waiting: Returns how many queries wait in the router: a batch nobody waits for is
            not told (see :class:`~actors._router_link.RouterLink`). None: always told.
        wanted: Returns whether some query waits for the named view (a hint: it may lag the
            router by a moment); those views are stepped first, and again between the other
            views of a step when newer events arrived (see :meth:`_serve_wanted`). None: the
            views' order, one batch each per step.
        due: Whether a query parked for a view at a position is still unanswered: after telling
            the router, the projector pauses until it is not (see ``RouterLink``). None: never.
        report_steps: Also tell the router every step's positions at its end (see
            ``RouterLink``: the router of a projection process is the pipe to the engine).
        backoff: When a view whose storage failed is tried again (default:
            :data:`~actors._backoff.VIEW_RETRY`).
        fault_seam: Called before each message is handled (tests raise there); None in use.
    """

    use_daemon_thread = True
    actor_kind = "projector"
    policy = "resume"
    redeliver = (HeadAdvanced, CatchUp, RetryDue, RetryView)

    def __init__(
        self,
        store: ProjectionLog,
        progresses: Sequence[Progress],
        router: Teller | None,
        *,
        batch_size: int = 2000,
        tail: EventTail | None = None,
        on_batch: Any = None,
        waiting: Callable[[], int] | None = None,
        wanted: Callable[[str], bool] | None = None,
        due: Callable[[str, int], bool] | None = None,
        report_steps: bool = False,
        backoff: Backoff | None = None,
        fault_seam: FaultSeam | None = None,
    ) -> None:
        super().__init__()
        self._link = RouterLink(router, waiting=waiting, due=due, report_steps=report_steps)
        self._wanted = wanted
        self._store = store
        # Misses decode only the tags these views handle (a view skips the others anyway).
        tags = handled_tags([progress.view for progress in progresses])
        self._read: Reader = tail.reader(tags) if tail is not None else store_reader(store, tags)
        self._progress = {progress.view.name: progress for progress in progresses}
        self._batch_size = batch_size
        self._on_batch = on_batch
        self._head = store.head()
        self._scheduled = False
        self._backoff = VIEW_RETRY if backoff is None else backoff
        self._timers = RetryTimers(self._retry_due)
        self.fault_seam = fault_seam
        self._failures = 0  # handler failures in a row (not a view's): paces the resumption
        self._folding = Folding(())  # set at start (see on_start)
        self._lag: LagBound | None = None  # Engine.open(max_view_lag=...), see BoundLag

    def on_start(self) -> None:
        """Start catching up from every view's checkpoint."""
        # Views with no rows yet that share a row fold catch up as a rebuild does (after any
        # snapshot was restored: a restored view is not at 0).
        self._folding = Folding([progress.view for progress in self._progress.values()])
        now = time.monotonic()
        for progress in self._progress.values():
            if progress.view.position() < self._head:
                # Behind from the start: lag_seconds must show it, not wait for the next commit.
                progress.behind_since = now
        self._schedule()

    def on_stop(self) -> None:
        """Cancel the pending retries; let go of the engine's door (``max_view_lag``)."""
        self._timers.cancel_all()
        if self._lag is not None:
            self._lag.release()  # a stopped projector must never leave new commands waiting

    def on_resume(self) -> None:
        """Catch up again after a handler failure, once the backoff says so."""
        self._failures += 1
        # The failed message may have been the pending CatchUp: without this, nothing would
        # ever schedule one again and every view would sit still.
        self._scheduled = True
        self._timers.arm(_RESUME, self._backoff.delay(self._failures))

    def on_receive(self, message: Any) -> Any:
        """Handle head notifications, catch-up steps, swaps, retries of views and parked events."""
        if isinstance(message, HeadAdvanced):
            self._head_advanced(message.head)
        elif isinstance(message, CatchUp):
            self._scheduled = False
            self._yield_to_commands()
            self._step()
        elif isinstance(message, RetryDue) and message.view == _RESUME:
            self._scheduled = False
            self._schedule()
        elif isinstance(message, RetryDue):
            progress = self._progress[message.view]
            if progress.waiting == message.token:  # else a timer cancelled as it fired
                progress.waiting = 0
                self._schedule()
        elif isinstance(message, RetryView):
            self._restart(message.view)
        elif isinstance(message, Swap):
            return self._swap(message)
        elif isinstance(message, RetryParked):
            return self._retry(message.view, message.position)
        elif isinstance(message, BoundLag):
            self._lag = message.bound
            self._check_lag()
        return None

    def _check_lag(self) -> None:
        """Hold or let go of the engine's door (``max_view_lag``): stepped views only."""
        if self._lag is None:
            return
        folding = self._folding.names()
        self._lag.update(
            self._head,
            (
                p.view.position()
                for p in self._progress.values()
                if p.runnable and p.view.name not in folding
            ),
        )

    def _yield_to_commands(self) -> None:
        """Let the command path take the GIL first when only a few events are new.

        The writer wakes this thread and the committing callers at once; whichever takes the GIL
        first makes the other wait. One command at a time, durable, the views' work ahead of the
        caller's next command made its p50 1.45x that of ``views=[]`` (824 vs 570 us); a short
        sleep first lets the caller send it, and the views are applied while its commit waits on
        fsync (the GIL free then): 1.06x with 100 us, 1.05x with 200 us, 1.21x with 50 us
        (alternating runs, medians of 4). With a backlog (a load in flight) the views go at
        once: sleeping then would only slow them, and commands/s, for nothing.
        """
        behind = self._head - min(
            (p.view.position() for p in self._progress.values() if p.runnable), default=self._head
        )
        if 0 < behind <= _SMALL_BACKLOG:
            time.sleep(_YIELD_SECONDS)

    def _head_advanced(self, head: int) -> None:
        if head > self._head:
            self._head = head
            now = time.monotonic()
            for progress in self._progress.values():
                if progress.behind_since is None:
                    progress.behind_since = now
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.actor_ref.tell(CatchUp())

    def _retry_due(self, view: str, token: int) -> None:
        """Runs on a retry timer's thread: only hand the news to the projector."""
        with contextlib.suppress(pykka.ActorDeadError):  # stopped meanwhile: nothing to retry
            self.actor_ref.tell(RetryDue(view, token))

    def _step(self) -> None:
        self._link.begin_step()
        head = max(self._head, self._store.head())
        self._head = head
        advanced: dict[str, int] = {}
        folding = self._fold_step(head, advanced)
        behind = bool(folding)
        order = [p for p in self._progress.values() if p.view.name not in folding]
        wanted = self._wanted
        if wanted is not None:
            order.sort(key=lambda p: not wanted(p.view.name))  # views queries wait for first
        for progress in order:
            # Stalled, or its retry not due yet: skipped, the others go on.
            if not progress.runnable or not self._try_step(progress, head, advanced):
                continue
            name = progress.view.name
            if name in advanced:
                # Told per view, as soon as it has applied the batch: a query waiting on the
                # first view does not also wait for the other views' share of the batch.
                self._link.tell({name: advanced[name]})
            self._serve_wanted(advanced)
            self._check_lag()  # after each view's batch: held commands go on sooner
            if progress.view.position() < head:
                behind = True
            else:
                progress.behind_since = None
        self._link.end_step(advanced)
        self._check_lag()
        if advanced and self._on_batch is not None:
            self._on_batch(advanced)
        self._failures = 0
        if behind:
            self._schedule()

    def _fold_step(self, head: int, advanced: dict[str, int]) -> frozenset[str]:
        """Fold a batch for the views catching up from 0 (see :mod:`actors._folding`).

        Returns the names of the views still folding: they are not stepped event by event.
        """
        folding = self._folding.names()
        if not folding:
            return folding
        loaded, skipped = self._folding.step(self._store, self._read, head, self._batch_size)
        positions = self._folding.positions()
        for name, progress in self._progress.items():
            progress.skipped += skipped.get(name, 0)
            progress.folded = positions.get(name, 0)  # shown by status while it folds
        for view in loaded:
            advanced[view.name] = view.position()
            self._link.tell({view.name: view.position()})
        return self._folding.names()

    def _serve_wanted(self, advanced: dict[str, int]) -> None:
        """Between two views of a step, bring the views queries wait for up to the newest head.

        Under load a step takes ~10-30 ms (four views' batches, sharing the GIL with the write
        path): an event committed just after a step began would otherwise wait for that whole
        step, then for its own view's turn in the next one. Measured with a paced load of 11k
        commands/s, six alternating runs, together with the wanted-first order of ``_step``:
        ack -> visible p99 17.8 -> 13.3 ms (median of the runs; p50 2.3 -> 2.5 ms).
        """
        wanted = self._wanted
        if wanted is None or not self._link.queries_waiting():
            return
        head = self._store.head()
        folding = self._folding.names()
        for progress in self._progress.values():
            name = progress.view.name
            if (
                wanted(name)
                and name not in folding
                and progress.runnable
                and progress.view.position() < head
                and self._try_step(progress, head, advanced)
                and name in advanced
            ):
                self._link.tell({name: advanced[name]})

    def _try_step(self, progress: Progress, head: int, advanced: dict[str, int]) -> bool:
        """Step one view, noting it in ``advanced`` if it moved; False if it failed."""
        name = progress.view.name
        try:
            if self._step_view(progress, head):
                advanced[name] = progress.view.position()
        except CorruptLog as corrupt:
            self._stall(progress, corrupt)
            return False
        except Exception as error:  # noqa: BLE001 - whatever it is, the view must not stop unseen
            # Its storage failed (a poison event would have been parked): try again later.
            self._retry_later(progress, error)
            return False
        if progress.failure is not None:
            log.info("view_recovered", view=name, attempts=progress.failure.attempts)
            progress.failure = None
        return True

    def _step_view(self, progress: Progress, head: int) -> bool:
        """Apply the next batch to one view; return whether it advanced.

        Raises:
            CorruptLog: The next record cannot be read (and the view does not skip it).
            Exception: The view's storage (or the log's) failed; nothing of the batch is lost.
        """
        view = progress.view
        start = view.position() + 1
        if start > head:
            return False
        events, up_to, skipped = read_batch(self._read, view, start, self._batch_size)
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

    def _stall(self, progress: Progress, corrupt: CorruptLog) -> None:
        # Not retried by itself: the same bytes would fail the same way. retry_view restarts it.
        failure = Failure.after(progress.failure, corrupt, stalled=True, backoff=self._backoff)
        progress.failure = failure
        log.error(
            "view_stalled",
            view=progress.view.name,
            position=corrupt.position,
            attempts=failure.attempts,
            error=failure.error,
            exc_info=corrupt,
        )

    def _retry_later(self, progress: Progress, error: Exception) -> None:
        failure = Failure.after(progress.failure, error, stalled=False, backoff=self._backoff)
        name = progress.view.name
        progress.waiting = self._timers.arm(name, failure.delay)
        progress.failure = failure  # published once its retry is armed: status never runs ahead
        log.warning(
            "view_retrying",
            view=name,
            position=progress.view.position(),
            attempts=failure.attempts,
            delay=failure.delay,
            error=failure.error,
            # The traceback once per episode: a storage down for an hour logs one line per 5 s.
            exc_info=error if failure.attempts == 1 else None,
        )

    def _restart(self, name: str) -> None:
        """Try ``name`` again now, whatever its state, as if it had never failed."""
        progress = self._progress[name]
        self._timers.cancel(name)
        failure = progress.failure
        if failure is not None:
            log.info(
                "view_retry_requested",
                view=name,
                state=failure.state,
                attempts=failure.attempts,
                error=failure.error,
            )
        progress.waiting = 0
        progress.failure = None
        self._schedule()

    def _swap(self, message: Swap) -> int:
        view = self._progress[message.view].view
        self._folding.drop(view.name)  # its rebuilt copy replaces it, rows and all
        position = adopt_shadow(self._store, view, message.shadow, set(message.reparked))
        self._link.adopted(view.name, position)
        return position

    def _retry(self, name: str, position: int) -> bool:
        if name in self._folding.names():
            return False  # no rows yet to apply it to: it stays parked until the view loads
        return retry_parked(self._store, self._progress[name].view, position)
