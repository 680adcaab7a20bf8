"""Retention work of the engine's housekeeping thread: idempotency rows and stale snapshots.

Each housekeeping round (at most every 0.5 s) calls :meth:`Retention.run_round`, which

* prunes the idempotency table down to its window (see :mod:`store._retention`) in batches of
  at most ``batch`` log positions, one small write transaction each, and goes on with further
  batches only while the round's time budget lasts: the group commit waits at most for one
  batch, and a backlog (after a long stop, or a window just shortened) drains over a few rounds;
* walks the snapshots table once after the engine opens, in batches too, dropping snapshots of
  another state schema than their decider's current one (they are never loaded again).

A failure here costs nothing but space: it is logged and the next round tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Final

from store import EventStore, RecentCommands, get_logger
from store._retention import cutoff_of

__all__ = ["BATCH", "ROUND_BUDGET", "Retention"]

log = get_logger(__name__)

BATCH: Final = 1000
"""Most log positions walked (so rows deleted) per write transaction."""
ROUND_BUDGET: Final = 0.05
"""Seconds of pruning per housekeeping round, at most (one batch always runs when due)."""


class Retention:
    """Keeps the idempotency table within its window and drops stale snapshots.

    Args:
        store: The event store (the real one, not a fault-injection wrapper).
        window: Seconds, :class:`RecentCommands`, or None (keep every command id).
        clock: The engine's clock (the one that stamps the commands' events).
        schemas: Each decider's stream type and current ``state_schema_version``.
        batch: Most log positions walked per transaction.
        budget: Seconds of pruning per round.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        window: float | RecentCommands | None,
        clock: Callable[[], datetime],
        schemas: Mapping[str, int],
        batch: int = BATCH,
        budget: float = ROUND_BUDGET,
    ) -> None:
        self._store = store
        self._window = window
        self._clock = clock
        self._schemas = dict(schemas)
        self._batch = batch
        self._budget = budget
        self._snapshots_after: bytes | None = b""  # None: the one walk after open is done
        # The timestamp of the oldest command kept inside a duration window, once a batch has
        # stopped there: until the cutoff passes it there is nothing to prune, and no write
        # transaction is taken. Each one used to read and expand a batch of log records while
        # holding the log's write lock, twice a second: profiled under a write load, the writer
        # waited on that lock ~4% of the time. New commands only come after the edge.
        self._edge_ns: int | None = None
        # The log's head when a round last left nothing to prune that time alone can make due
        # (a count window down to its size, or every command pruned): until another command is
        # committed, a round would only take the write lock to find that again.
        self._quiet_head: int | None = None
        self.pruned = 0  # rows deleted since open (for tests and logs)
        self.snapshots_dropped = 0

    def run_round(self) -> None:
        """Do one round of retention work (called by the housekeeping thread)."""
        try:
            self._prune()
        except Exception:  # retried next round; an unpruned row only costs space
            log.exception("idempotency_prune_failed")
        try:
            self._drop_stale_snapshots()
        except Exception:  # retried next round
            log.exception("snapshot_sweep_failed")

    def _prune(self) -> None:
        window = self._window
        if window is None:
            return
        head = self._store.head()
        if head == self._quiet_head:
            return  # nothing committed since a round found nothing more to prune
        deadline = time.monotonic() + self._budget
        while True:
            if isinstance(window, RecentCommands):
                result = self._store.prune_commands(keep=window.count, limit=self._batch)
            else:
                cutoff = cutoff_of(self._clock(), window)
                if self._edge_ns is not None and cutoff <= self._edge_ns:
                    return  # the oldest command kept is still inside the window
                result = self._store.prune_commands(cutoff_ns=cutoff, limit=self._batch)
                self._edge_ns = result.edge_ns
            if result.pruned:
                self.pruned += result.pruned
                log.debug("idempotency_pruned", rows=result.pruned, cursor=result.cursor)
            if not result.more:
                # Left at an edge in the window, time makes it due (above); else only new
                # commands can (head was read before this round's transactions began).
                self._quiet_head = head if result.edge_ns is None else None
                return
            if time.monotonic() >= deadline:
                return

    def _drop_stale_snapshots(self) -> None:
        after = self._snapshots_after
        if after is None or not self._schemas:
            return
        self._snapshots_after, dropped = self._store.drop_stale_snapshots(
            self._schemas, after, self._batch
        )
        if dropped:
            self.snapshots_dropped += dropped
            log.info("stale_snapshots_dropped", count=dropped)
