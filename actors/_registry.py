"""The aggregate registry: activation, passivation and the engine's own O(1) actor index.

Aggregates are kept out of pykka's global ``ActorRegistry`` (a list: stopping 10k of 100k actors
took 8 s there). This index is an ``OrderedDict`` in least-recently-used order, so routing,
activation and passivation are all O(1). Actors asked to passivate leave it for a set of their
own until they retire (or refuse, or get a command): left in the index, every activation over
the cap walked over all of them from its LRU end, and under a burst of activations thousands
were pending there (measured: 1,480 entries visited per activation at a cap of 10; past a cap
of 10k, 5.9-7.3k commands/s against 11.1-12.4k once they left it, ``views=[]``).

Passivation protocol: the registry *asks* an aggregate to passivate (idle timeout, or the LRU
cap); the aggregate agrees only if nothing of its own is still in flight, and then calls
:meth:`AggregateRegistry.retire`, which, under the registry lock, removes it from the index,
re-routes any command that reached its inbox meanwhile (in arrival order, to a fresh actor that
loads from the now up-to-date log) and stops it. The LRU cap counts the actors already asked, so
concurrent activations never evict more than the excess.

Supervision (restart on demand): an aggregate that fails inside a handler calls
:meth:`AggregateRegistry.crashed` from its ``on_failure``; its queued commands go to a successor
that resyncs with the writer before loading, so nothing queued is dropped or decided on a stale
version.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pykka

from actors._aggregate import AggregateActor, AggregateKit, SnapshotStore
from actors._mail import tell
from actors._messages import Execute, Passivate
from actors._supervision import FaultSeam
from store import get_logger

if TYPE_CHECKING:
    from actors._dispatch import Dispatcher
    from domain.decider import Decider

__all__ = ["AggregateRegistry", "tune_collector"]

log = get_logger(__name__)

# Freeze the GC's view of long-lived objects after this many activations: at 100k live actors a
# full collection scans over a million objects and throughput fell 3x without it.
_FREEZE_EVERY = 10_000


def tune_collector() -> None:
    """Make full cyclic collections rarer (process-wide; never lowers a threshold).

    Tens of thousands of live actors and in-flight commands are long-lived objects: with the
    default thresholds (700, 10, 10) the collector rescans them so often that at 10k aggregates
    it cost a fifth of the write throughput (16.2k vs 19.2k commands/s with it off; 18.5k with
    these settings). Young collections stay frequent, so garbage cycles are still freed.
    """
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, 10_000), max(second, 20), max(third, 100))


class _Entry:
    __slots__ = ("last_used", "ref")

    def __init__(self, ref: pykka.ActorRef[AggregateActor], now: float) -> None:
        self.ref = ref
        self.last_used = now


class AggregateRegistry:
    """Routes commands to live aggregate actors of one type, activating them on demand.

    Args:
        decider: The aggregate type's pure write model.
        store: The event store the actors load from.
        writer: The log writer actor.
        dispatcher: The worker pool the actors run on.
        max_live: LRU cap on live actors (soft: an actor with commands in flight stays).
        snapshot_every: Events per aggregate between snapshots.
        clock: Returns the current UTC time.
        tune_gc: Freeze long-lived actors out of the collector's scans (False: never touch
            ``gc``; the embedding program owns its collector).
        fault_seam: Called before each aggregate message is handled (tests); None in use.
    """

    def __init__(
        self,
        *,
        decider: Decider[Any, Any, Any],
        store: SnapshotStore,
        writer: pykka.ActorRef[Any],
        dispatcher: Dispatcher,
        max_live: int,
        snapshot_every: int,
        clock: Callable[[], datetime],
        tune_gc: bool = True,
        fault_seam: FaultSeam | None = None,
    ) -> None:
        self.decider = decider
        self._dispatcher = dispatcher
        self._max_live = max_live
        self._tune_gc = tune_gc
        self._kit = AggregateKit(
            decider=decider,
            store=store,
            writer=writer,
            registry=self,
            snapshot_every=snapshot_every,
            clock=clock,
            fault_seam=fault_seam,
        )
        # Ids whose actor crashed with nothing queued: their next actor resyncs before loading.
        self._resync_next: set[str] = set()
        # Reentrant: retire() re-routes leftovers while holding it.
        self._lock = threading.RLock()
        # Live actors not asked to passivate, least recently used first; and those asked, until
        # they answer (retire, refuse) or a command brings them back.
        self._index: OrderedDict[str, _Entry] = OrderedDict()
        self._leaving: dict[str, _Entry] = {}
        self._since_freeze = 0
        self._since_unfreeze = 0
        self.activations = 0
        self.passivations = 0

    def __len__(self) -> int:
        """Return the number of live aggregate actors."""
        return len(self._index) + len(self._leaving)

    @property
    def _asked(self) -> int:
        """Actors asked to passivate that have not answered yet."""
        return len(self._leaving)

    def route(self, aggregate_id: str, message: Execute, *, resync: bool = False) -> None:
        """Deliver ``message`` to the aggregate's actor, activating it if needed.

        ``resync``: an actor activated for it first resyncs with the writer (see
        :class:`AggregateActor`).
        """
        now = time.monotonic()
        with self._lock:
            entry = self._index.get(aggregate_id)
            if entry is not None:
                self._index.move_to_end(aggregate_id)
            else:
                # Asked to passivate: it stays (it refuses once it sees this command).
                entry = self._leaving.pop(aggregate_id, None)
                if entry is None:
                    entry = self._activate(aggregate_id, now, resync=resync)
                else:
                    self._index[aggregate_id] = entry
            entry.last_used = now
            try:
                tell(entry.ref, message)
            except pykka.ActorDeadError:
                # It died of an unexpected failure: a fresh actor resyncs and reloads.
                log.warning("aggregate_actor_dead", aggregate_id=aggregate_id)
                entry = self._activate(aggregate_id, now, resync=True)
                tell(entry.ref, message)
            if len(self._index) > self._max_live:
                self._shed()

    def _activate(self, aggregate_id: str, now: float, *, resync: bool = False) -> _Entry:
        if self._resync_next:
            resync = aggregate_id in self._resync_next or resync
            self._resync_next.discard(aggregate_id)
        ref = AggregateActor.start_on(
            self._dispatcher, aggregate_id=aggregate_id, kit=self._kit, resync=resync
        )
        entry = _Entry(ref, now)
        self._index[aggregate_id] = entry
        self.activations += 1
        self._since_freeze += 1
        if self._since_freeze >= _FREEZE_EVERY:
            self._since_freeze = 0
            if self._tune_gc:
                gc.freeze()
        return entry

    def _shed(self) -> None:
        # Called with the lock held. Actors already asked will leave and are not in the index:
        # counting them again is what over-evicted (concurrent activations each asked a fresh
        # batch, and the live set fell far below the cap).
        while len(self._index) > self._max_live:
            aggregate_id, entry = self._index.popitem(last=False)
            self._ask(aggregate_id, entry)

    def _ask(self, aggregate_id: str, entry: _Entry) -> None:
        # Called with the lock held, `entry` out of the index.
        try:
            entry.ref.tell(Passivate())
        except pykka.ActorDeadError:
            # It died of an unexpected failure and cannot retire itself: forget it (a later
            # command activates a fresh one from the log). Unguarded, the error escaped route()
            # after the caller's command had already been delivered.
            return
        self._leaving[aggregate_id] = entry

    def _remove(self, aggregate_id: str) -> None:
        # Called with the lock held.
        if self._index.pop(aggregate_id, None) is None:
            self._leaving.pop(aggregate_id, None)

    def _entry(self, aggregate_id: str) -> _Entry | None:
        # Called with the lock held.
        entry = self._index.get(aggregate_id)
        return entry if entry is not None else self._leaving.get(aggregate_id)

    def trim(self) -> None:
        """Ask the least recently used actors over the cap to passivate (housekeeping).

        An actor with appends in flight refuses; without this second ask it stayed live until
        the next activation, so the cap was only enforced while commands kept arriving.
        """
        with self._lock:
            if len(self._index) > self._max_live:
                self._shed()

    def sweep(self, idle_timeout: float) -> int:
        """Ask aggregates idle for longer than ``idle_timeout`` seconds to passivate."""
        cutoff = time.monotonic() - idle_timeout
        asked = 0
        with self._lock:
            index = self._index
            while index:
                aggregate_id, entry = next(iter(index.items()))
                if entry.last_used > cutoff:
                    break  # LRU order: everything after is more recent
                del index[aggregate_id]
                self._ask(aggregate_id, entry)  # a dead one is forgotten (never retires)
                asked += 1
        return asked

    def retire(self, actor: AggregateActor) -> bool:
        """Remove ``actor`` (called from its own turn) and stop it; False if it is not current."""
        with self._lock:
            if not self._forget_current(actor):
                return False
            queued = actor.take_queued()
            actor._stop()  # noqa: SLF001 - stop now, from its own turn, with an empty inbox
            self.passivations += 1
            self._since_unfreeze += 1
            if self._since_unfreeze >= _FREEZE_EVERY:
                # Retired actors frozen earlier would never be collected: let the collector
                # see them again; the next activation wave freezes the survivors.
                self._since_unfreeze = 0
                if self._tune_gc:
                    gc.unfreeze()
            for message in queued:
                self.route(actor.aggregate_id, message)
        return True

    def crashed(self, actor: AggregateActor) -> None:
        """Restart on demand (from the failed actor's ``on_failure``, in its own turn).

        The actor is forgotten and every command queued in it goes, in order, to a successor
        that resyncs with the writer before loading: appends of the failed actor may still be in
        flight, and they must settle before the log is the whole truth about the aggregate.
        """
        with self._lock:
            self._forget_current(actor)
            queued = actor.take_queued()
            log.warning("aggregate_restarted", aggregate_id=actor.aggregate_id, queued=len(queued))
            if not queued:
                # Nothing to hand over now: the successor, whenever a command activates it,
                # still resyncs first (the failed actor's appends may be in flight).
                self._resync_next.add(actor.aggregate_id)
            for message in queued:
                self.route(actor.aggregate_id, message, resync=True)

    def _forget_current(self, actor: AggregateActor) -> bool:
        # Called with the lock held: remove the actor's entry if it is still the current one.
        entry = self._entry(actor.aggregate_id)
        if entry is None or entry.ref is not actor.actor_ref:
            return False
        self._remove(actor.aggregate_id)
        return True

    def refused(self, aggregate_id: str) -> None:
        """Note that an aggregate declined to passivate (it had work in flight).

        It goes back to the least recently used end, where it was: the next shedding (an
        activation over the cap, or housekeeping's :meth:`trim`) asks it again first.
        """
        with self._lock:
            entry = self._leaving.pop(aggregate_id, None)
            if entry is not None:
                self._index[aggregate_id] = entry
                self._index.move_to_end(aggregate_id, last=False)

    def stop_all(self, timeout: float) -> None:
        """Stop every live actor, waiting up to ``timeout`` seconds in all."""
        with self._lock:
            refs = [entry.ref for entry in [*self._index.values(), *self._leaving.values()]]
            self._index.clear()
            self._leaving.clear()
        futures = []
        for ref in refs:
            try:
                futures.append(ref.stop(block=False))
            except pykka.ActorDeadError:
                continue
        deadline = time.monotonic() + timeout
        for future in futures:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except (pykka.Timeout, pykka.ActorDeadError):
                log.warning("aggregate_stop_timeout")
                break
