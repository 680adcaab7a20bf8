"""The engine's housekeeping thread: the periodic work no request triggers.

Every round (at least twice a second) it flushes the views environment when a flush is due,
asks the aggregate registries to hold their LRU cap and passivate idle actors, prunes one
bounded batch of idempotency rows, and trains the log's compression dictionary when the log
has grown enough (:meth:`~store.EventStore.train_dictionary_if_due`: ~0.1-0.2 s, rarely). Each
step is guarded: a failure is logged and retried next round, because nothing here is on a
caller's path and the log stays the truth.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from actors._registry import AggregateRegistry
from actors._retention import Retention
from domain.errors import EngineClosed
from store import EventStore, ViewStore, get_logger

__all__ = ["Housekeeper"]

log = get_logger(__name__)


class Housekeeper:
    """Runs the housekeeping rounds on a daemon thread, from construction until :meth:`stop`.

    Args:
        event_store: The log (its compression dictionary, trained when due).
        view_store: The views environment (flushed when due).
        registries: Every aggregate registry (LRU cap, idle passivation).
        retention: The idempotency pruning.
        idle_timeout: Seconds before an idle aggregate is passivated (None: never).
    """

    def __init__(
        self,
        *,
        event_store: EventStore,
        view_store: ViewStore,
        registries: Sequence[AggregateRegistry],
        retention: Retention,
        idle_timeout: float | None,
    ) -> None:
        self._event_store = event_store
        self._view_store = view_store
        self._registries = list(registries)
        self._retention = retention
        self._idle = idle_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-housekeeping", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the rounds and wait up to ``timeout`` seconds for the current one to end."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        idle = self._idle
        # At least twice a second: unflushed view writes are bounded in time (OS-crash exposure).
        period = 0.5 if idle is None else max(0.05, min(idle / 4, 0.5))
        while not self._stop.wait(period):
            self._round(idle)

    def _round(self, idle: float | None) -> None:
        try:
            self._view_store.sync_if_due()
        except Exception:  # a failed flush is retried next round; the log is the truth
            log.exception("views_flush_failed")
        for registry in self._registries:
            try:
                registry.trim()
                if idle is not None:
                    registry.sweep(idle)
            except Exception:  # the next round asks again
                log.exception("passivation_round_failed")
        self._retention.run_round()  # guarded inside: each of its steps logs and retries
        try:
            self._event_store.train_dictionary_if_due()
        except EngineClosed:
            pass  # the engine is closing; the next open trains
        except Exception:  # records stay plain or keep the older dictionary; retried later
            log.exception("log_dictionary_failed")
