"""The engine's sagas as one object: started with the engine, stopped before its write side.

See :mod:`actors._saga_spec` for what a saga is and :mod:`actors._saga` for how one runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pykka

from actors._backoff import Backoff
from actors._saga import BATCH_SIZE, SagaProgress, SagaRunner, Submit
from actors._saga_spec import Saga, SagaStatus, checkpoint_key
from actors._supervision import FaultSeam
from actors._tail import EventTail
from actors._writer import LogWriter
from store import EventStore, get_logger

__all__ = ["Sagas"]

log = get_logger(__name__)


class Sagas:
    """The runners of an engine's sagas, their progress, and waiting for them.

    Args:
        sagas: The sagas, checked (:func:`~actors._saga_spec.check_sagas`).
        store: The event store.
        tail: The shared decoded events, if the engine keeps one.
        batch_size: Events per step of each runner.
        backoff: When an unanswered event is tried again (default: the views' backoff).
        fault_seam: Called before each message of a runner is handled (tests).
    """

    def __init__(
        self,
        sagas: Sequence[Saga],
        store: EventStore,
        *,
        tail: EventTail | None = None,
        batch_size: int = BATCH_SIZE,
        backoff: Backoff | None = None,
        fault_seam: FaultSeam | None = None,
    ) -> None:
        self._sagas = list(sagas)
        self._store = store
        self._tail = tail
        self._batch_size = batch_size
        self._backoff = backoff
        self._fault_seam = fault_seam
        self._progress = {saga.name: SagaProgress() for saga in self._sagas}
        self._runners: list[pykka.ActorRef[Any]] = []

    def __len__(self) -> int:
        return len(self._sagas)

    def start(self, writer: pykka.ActorRef[LogWriter], submit: Submit) -> None:
        """Start a runner per saga, woken by ``writer``'s head, issuing through ``submit``."""
        for saga in self._sagas:
            # Read the checkpoint here, not only in the runner's on_start (which runs later, on
            # its own thread), so status() right after open already shows where the saga stands.
            self._progress[saga.name].position = self._store.checkpoint(checkpoint_key(saga.name))
            ref = SagaRunner.start(
                saga,
                self._store,
                submit,
                self._progress[saga.name],
                tail=self._tail,
                batch_size=self._batch_size,
                backoff=self._backoff,
                fault_seam=self._fault_seam,
            )
            self._runners.append(ref)
            writer.proxy().subscribe(ref).get(timeout=30)

    def stop(self, timeout: float) -> None:
        """Stop every runner (each finishes the step it is in; the rest waits for a reopen)."""
        for ref in self._runners:
            try:
                ref.stop(timeout=timeout)
            except pykka.Timeout:
                log.warning("saga_stop_timed_out", saga=str(ref))
        self._runners.clear()

    def status(self, head: int) -> dict[str, SagaStatus]:
        """Return every saga's progress against ``head``."""
        return {name: progress.status(head) for name, progress in self._progress.items()}

    def wait(self, timeout: float) -> bool:
        """Wait until every saga has reacted to the whole log; False after ``timeout`` s.

        "The whole log" includes the events the sagas' own commands caused: a saga reaches the
        head only once every command of every event before it was answered, so when each saga's
        position is at the head read just before, every flow they drive has settled.
        """
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            head = self._store.head()
            if all(progress.position >= head for progress in self._progress.values()):
                return True
            if time.monotonic() >= deadline:
                return False
            # Waiting on a condition with a deadline: positions are plain reads, so poll them.
            threading.Event().wait(delay)
            delay = min(delay * 2, 0.02)
