"""The saga runner: one actor per saga, following the log and issuing the saga's commands.

It is built like a projector (:mod:`actors._projector`): woken by the writer's
:class:`~actors._messages.HeadAdvanced`, it reads the log from its checkpoint in batches (decoded
once, from the shared :class:`~actors._tail.EventTail` when there is one) and handles one batch
per message, so stops and retries interleave with a long catch-up. For each event it calls the
saga's pure ``react``, gives every command the id derived from the event
(:func:`~actors._saga_spec.saga_command_id`) and submits it through the engine's own door.

**The checkpoint moves only past events whose every command was answered.** An answer is a
result or a rule's verdict (``CommandRejected``, ``AggregateNotFound``, ``ConcurrencyConflict``,
``IdempotencyConflict``: logged ``saga_command_rejected``, counted, and the saga moves on: the
same command would be refused again). Anything else (``StorageError``, ``ActorFailed``,
``CommitFailed``, a timeout, ``react`` raising) leaves the event unanswered: the checkpoint
stays before it and the saga tries that event again after a capped backoff
(:mod:`actors._backoff`), re-submitting the same ids, which the engine's idempotency answers with
their original results for every command that did commit. A crash between the commands' commit
and the checkpoint's write costs the same re-submission after the restart, never a second
effect.

The checkpoint lives in the *log's* environment (key ``saga:<name>``), not the views': the views
environment is not fsynced and is wiped and rebuilt from the log after an OS crash, which a view
survives by replaying but a saga could not (its replay would re-issue everything, and after the
idempotency window it would apply it again). In the log's environment it is exactly as durable
as the commands it accounts for, and backups carry it.

Supervision: *resume*, as the projector: a failure that escapes a handler is logged, and the
next step is scheduled after the same capped backoff.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec
import pykka

from actors._backoff import VIEW_RETRY, Backoff, RetryTimers
from actors._messages import CommandResult, HeadAdvanced
from actors._progress import Failure
from actors._replay import Reader, store_reader
from actors._saga_spec import Saga, SagaStatus, checkpoint_key, saga_command_id, with_command_id
from actors._supervision import FaultSeam, Supervised
from actors._tail import EventTail
from domain.errors import (
    AggregateNotFound,
    CommandRejected,
    CommandTimeout,
    ConcurrencyConflict,
    CorruptLog,
    EngineClosed,
    IdempotencyConflict,
)
from store import EventStore, RecordedEvent, get_logger

__all__ = ["ANSWERED", "BATCH_SIZE", "SagaProgress", "SagaRunner", "Submit"]

log = get_logger(__name__)

BATCH_SIZE: Final = 256
"""Events per step: their commands are all in flight at once, then awaited in order."""

ANSWERED: Final[tuple[type[Exception], ...]] = (
    CommandRejected,
    AggregateNotFound,
    ConcurrencyConflict,
    IdempotencyConflict,
)
"""Errors that answer a command for good: re-submitting it would be refused the same way."""

Submit = Callable[[Any], pykka.Future[CommandResult]]
"""The engine's door for commands (``Engine.submit``)."""

_RESUME: Final = "\x00resume"  # the runner's own timer after a handler failure


class _Step(msgspec.Struct, frozen=True):
    """Runner -> itself: handle the next batch if behind."""


class _Due(msgspec.Struct, frozen=True):
    """Retry timer -> runner: the retry ``token`` is due."""

    token: int


class SagaProgress:
    """A saga's progress, shared with the engine (plain attribute reads: thread-safe).

    ``failure`` is replaced whole, so a status read sees one consistent episode.
    """

    def __init__(self) -> None:
        self.position = 0
        self.behind_since: float | None = None
        self.failure: Failure | None = None
        self.issued = 0
        self.rejected = 0

    def status(self, head: int) -> SagaStatus:
        """Return the saga's progress against ``head``."""
        position, behind, failure = self.position, self.behind_since, self.failure
        lag = max(0.0, time.monotonic() - behind) if position < head and behind else 0.0
        status = SagaStatus(
            position=position,
            lag_events=max(0, head - position),
            lag_seconds=round(lag, 6),
            issued=self.issued,
            rejected=self.rejected,
        )
        if failure is None:
            return status
        return msgspec.structs.replace(
            status,
            state="retrying",
            error=failure.error,
            attempts=failure.attempts,
            failing_since=failure.since,
            retry_delay=failure.delay,
        )


class _Blocked(msgspec.Struct, frozen=True):
    """Where a step stopped: the first event not fully answered, and why."""

    position: int
    error: BaseException


def _resolve(answer: Any, timeout: float) -> None:
    """Wait for a command's future (or re-raise the door's verdict it stands for)."""
    if isinstance(answer, BaseException):
        raise answer
    answer.get(timeout=timeout)


class SagaRunner(Supervised, pykka.ThreadingActor):
    """Runs one saga: reads the log from its checkpoint, submits its commands, moves on.

    Args:
        saga: The saga (its ``name``, ``tags`` and pure ``react``).
        store: The event store (the log, and the saga's checkpoint in it).
        submit: The engine's door for commands.
        progress: Where it publishes its position and health.
        tail: The shared decoded events (default: decode from the store itself).
        batch_size: Events per step.
        command_timeout: Seconds to wait for each command's answer before it counts as a
            transient failure (it may still commit: its re-submission is answered, not re-done).
        backoff: When an unanswered event is tried again (default: the views' backoff).
        fault_seam: Called before each message is handled (tests raise there); None in use.
    """

    use_daemon_thread = True
    actor_kind = "saga"
    policy = "resume"
    redeliver = (HeadAdvanced, _Step, _Due)

    def __init__(
        self,
        saga: Saga,
        store: EventStore,
        submit: Submit,
        progress: SagaProgress,
        *,
        tail: EventTail | None = None,
        batch_size: int = BATCH_SIZE,
        command_timeout: float = 10.0,
        backoff: Backoff | None = None,
        fault_seam: FaultSeam | None = None,
    ) -> None:
        super().__init__()
        self._saga = saga
        self._name = saga.name
        self._tags = saga.tags
        self._key = checkpoint_key(saga.name)
        self._store = store
        self._submit = submit
        self._progress = progress
        self._read: Reader = tail.reader() if tail is not None else store_reader(store)
        self._batch_size = batch_size
        self._command_timeout = command_timeout
        self._backoff = VIEW_RETRY if backoff is None else backoff
        self._timers = RetryTimers(self._retry_due)
        self.fault_seam = fault_seam
        self._head = store.head()
        self._scheduled = False
        self._waiting = 0  # the token of the retry timer this saga waits for (0: none)
        self._closing = False  # the engine refused a command as closed: stop stepping
        self._failures = 0  # handler failures in a row: paces the resumption

    def on_start(self) -> None:
        """Resume from the checkpoint."""
        progress = self._progress
        progress.position = self._store.checkpoint(self._key)
        if progress.position < self._head:
            progress.behind_since = time.monotonic()
        log.info("saga_started", saga=self._name, position=progress.position, head=self._head)
        self._schedule()

    def on_stop(self) -> None:
        """Cancel the pending retries."""
        self._timers.cancel_all()

    def on_resume(self) -> None:
        """Step again after a handler failure, once the backoff says so."""
        self._failures += 1
        self._scheduled = True  # the failed message may have been the pending step
        self._timers.arm(_RESUME, self._backoff.delay(self._failures))

    def on_receive(self, message: Any) -> Any:
        """Handle head notifications, steps and due retries."""
        if isinstance(message, HeadAdvanced):
            if message.head > self._head:
                self._head = message.head
                if self._progress.behind_since is None:
                    self._progress.behind_since = time.monotonic()
            self._schedule()
        elif isinstance(message, _Step):
            self._scheduled = False
            self._step()
            self._failures = 0
        elif isinstance(message, _Due) and message.token in {self._waiting, -1}:
            self._waiting = 0
            self._scheduled = False
            self._schedule()
        return None

    def _schedule(self) -> None:
        if not self._scheduled and not self._waiting and not self._closing:
            self._scheduled = True
            self.actor_ref.tell(_Step())

    def _retry_due(self, key: str, token: int) -> None:
        """Runs on a timer's thread: only hand the news to the runner."""
        with contextlib.suppress(pykka.ActorDeadError):  # stopped meanwhile: nothing to retry
            self.actor_ref.tell(_Due(-1 if key == _RESUME else token))

    # ------------------------------------------------------------ one step

    def _step(self) -> None:
        progress = self._progress
        head = max(self._head, self._store.head())
        self._head = head
        start = progress.position + 1
        if start > head:
            progress.behind_since = None
            return
        try:
            records, blocked = self._read_from(start, min(self._batch_size, head - start + 1))
            if not records and blocked is None:
                return  # nothing readable yet: the next HeadAdvanced wakes the saga
            done, blocked = self._react(records, blocked)
            if done > progress.position:
                self._store.set_checkpoint(self._key, done)
                progress.position = done
        except Exception as error:  # noqa: BLE001 - the log or the checkpoint failed: retry later
            blocked = _Blocked(start, error)
        if blocked is None:
            self._recovered()
            if progress.position < head:
                self._schedule()
            else:
                progress.behind_since = None
        elif isinstance(blocked.error, EngineClosed):
            self._closing = True  # the engine is closing: the rest is for the next open
            log.info("saga_paused_for_close", saga=self._name, position=progress.position)
        else:
            self._retry_later(blocked)

    def _read_from(self, start: int, limit: int) -> tuple[list[RecordedEvent], _Blocked | None]:
        try:
            return self._read(start, limit), None
        except CorruptLog as corrupt:
            # React to the good prefix first; the bad record blocks the saga where it is.
            good = self._read(start, corrupt.position - start) if corrupt.position > start else []
            return good, _Blocked(corrupt.position, corrupt)

    def _react(
        self, records: Sequence[RecordedEvent], blocked: _Blocked | None
    ) -> tuple[int, _Blocked | None]:
        """Submit every command of ``records``, then await them in order.

        Returns:
            The last position whose reaction is complete, and where (and why) the step stopped
            short, if it did.
        """
        issued: list[tuple[int, list[tuple[str, Any]]]] = []
        for record in records:
            if self._tags is not None and record.tag not in self._tags:
                issued.append((record.position, []))
                continue
            try:
                issued.append((record.position, self._issue(record)))
            except Exception as error:  # noqa: BLE001 - react or the door failed: retry later
                blocked = _Blocked(record.position, error)
                break
        last = records[0].position - 1 if records else 0
        for position, answers in issued:
            for command_id, answer in answers:
                unanswered = self._await(command_id, answer, position)
                if unanswered is not None:
                    return last, _Blocked(position, unanswered)
            last = position
        return last, blocked

    def _issue(self, record: RecordedEvent) -> list[tuple[str, Any]]:
        """Submit the commands ``react`` returns for ``record``; each with its future or error.

        Raises:
            Exception: ``react`` failed, or the door refused a command for a reason that may
                pass (the engine busy or closing): the event stays unanswered.
        """
        submitted: list[tuple[str, Any]] = []
        for index, command in enumerate(self._saga.react(record)):
            command_id = saga_command_id(self._name, record.position, index)
            try:
                submitted.append((command_id, self._submit(with_command_id(command, command_id))))
            except ANSWERED as verdict:  # refused at the door (InvalidCommand): an answer too
                submitted.append((command_id, verdict))
        return submitted

    def _await(self, command_id: str, answer: Any, position: int) -> BaseException | None:
        """Wait for one command's answer; return the error if it leaves the event unanswered."""
        try:
            _resolve(answer, self._command_timeout)
        except ANSWERED as verdict:
            self._progress.rejected += 1
            # IdempotencyConflict: the same derived id with another command, i.e. `react` is
            # not pure (or the saga changed meanwhile): worth an error, not a shrug.
            level = log.error if isinstance(verdict, IdempotencyConflict) else log.info
            level(
                "saga_command_rejected",
                saga=self._name,
                position=position,
                command_id=command_id,
                rule=getattr(verdict, "rule", ""),  # CommandRejected's rule, when it has one
                error=f"{type(verdict).__name__}: {verdict}",
            )
            return None
        except pykka.Timeout:
            return CommandTimeout(command_id, self._command_timeout)
        except Exception as error:  # noqa: BLE001 - transient (storage, actor, commit): retried
            return error
        self._progress.issued += 1
        return None

    # ------------------------------------------------------------ failures

    def _retry_later(self, blocked: _Blocked) -> None:
        progress = self._progress
        error = blocked.error
        failure = Failure.after(progress.failure, error, stalled=False, backoff=self._backoff)
        self._waiting = self._timers.arm(self._name, failure.delay)
        progress.failure = failure  # published once its retry is armed: status never runs ahead
        log.warning(
            "saga_retrying",
            saga=self._name,
            position=blocked.position,
            attempts=failure.attempts,
            delay=failure.delay,
            error=failure.error,
            # The traceback once per episode: a storage down for an hour logs one line per 5 s.
            exc_info=error if failure.attempts == 1 else None,
        )

    def _recovered(self) -> None:
        failure = self._progress.failure
        if failure is not None:
            log.info("saga_recovered", saga=self._name, attempts=failure.attempts)
            self._progress.failure = None
