"""Supervision: every message that carries a caller's future is answered, whatever happens.

Commands and queries travel between actors as one-way messages that carry the caller's future
(:class:`~actors._messages.Execute`, :class:`~actors._messages.AppendCommand`,
:class:`~actors._router.Ask`): actors never block on each other, so they hand futures on instead of
replying. pykka's own teardown answers only asks (messages with a ``reply_to``), so a carried future
used to be dropped whenever its holder failed or stopped: the caller hung, its backpressure slot
and in-flight id leaked, and every retry with the same id attached to the dead future.

The rule, in the spirit of Erlang/OTP supervisors, is enforced in three places shared by every
actor kind (:class:`Supervised`):

* **A failure inside a handler** fails the future the message carries (if still pending) with a
  typed :class:`~domain.errors.EngineError`, before pykka's failure handling runs.
* **At stop** (close, or a failure that stops the actor), every message left in the inbox is
  answered: asks and carried futures alike get :class:`~domain.errors.EngineClosed` (or
  :class:`~domain.errors.ActorFailed` after a failure), never a bare pykka error or silence.
* **A restart policy per kind** decides what happens to the actor itself (the README's
  supervision table mirrors this):

  - ``aggregate``, *restart on demand*: it is retired from its registry; its queued commands go
    to a fresh actor that first resyncs with the writer, then reloads from the log (its only
    durable state).
  - ``writer``, *resume*: a failure fails that batch's callers and the writer goes on with the
    next batch (its only state is which streams must resync, kept across the failure).
  - ``projector``, *resume*, per view: transient errors are retried with backoff, a corrupt record
    stops that view until ``Engine.retry_view``.
  - ``router``, *resume*: a failing query fails its caller only; at stop every parked query is
    answered at once.

A fault seam (``fault_seam``, set by the engine from ``Engine.open(fault_seam=...)``) is called at
the start of every handler with the actor kind and the message, so tests can raise inside each
kind's message handling: the chaos test drives every path above through it.
"""

from __future__ import annotations

import functools
import queue
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Concatenate, Literal, ParamSpec, Protocol, TypeVar

import pykka
from pykka import messages

from domain.errors import ActorFailed, EngineClosed, EngineError, StorageError
from store import get_logger

__all__ = [
    "FaultSeam",
    "Supervised",
    "answer_carried",
    "answer_envelope",
    "as_engine_error",
    "carried_reply",
    "fail",
    "guarded",
    "guarded_async",
    "settle",
]

log = get_logger(__name__)

_MAX_REDELIVERIES = 5

FaultSeam = Callable[[str, Any], None]
"""Called with (actor kind, message) before each message is handled; raising simulates a crash."""


class _Closable(Protocol):
    @property
    def closed(self) -> bool: ...


_E = TypeVar("_E", bound=_Closable)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def as_engine_error(error: BaseException, operation: str) -> EngineError:
    """Return ``error`` if it is an EngineError, else a :class:`StorageError` wrapping it."""
    if isinstance(error, EngineError):
        return error
    return StorageError(operation, repr(error))


def fail(reply: pykka.Future[Any], error: BaseException) -> bool:
    """Resolve ``reply`` with ``error``; False (and nothing done) if it was already resolved.

    Tolerant by design: with several parties able to answer a future (its holder, a teardown, a
    supervisor), the first answer wins and the others must not crash the thread that tries.
    """
    try:
        reply.set_exception((type(error), error, error.__traceback__))
    except queue.Full:
        return False
    return True


def settle(reply: pykka.Future[Any], value: Any) -> bool:
    """Resolve ``reply`` with ``value``; False (and nothing done) if it was already resolved."""
    try:
        reply.set(value)
    except queue.Full:
        return False
    return True


def carried_reply(message: object) -> pykka.Future[Any] | None:
    """Return the caller's future that ``message`` carries, if it carries one."""
    reply = getattr(message, "reply", None)
    return reply if isinstance(reply, pykka.Future) else None


def answer_carried(message: object, error: BaseException) -> bool:
    """Fail the future ``message`` carries, if any and still pending; return whether it did."""
    reply = carried_reply(message)
    return reply is not None and fail(reply, error)


def answer_envelope(envelope: Any, error: EngineError) -> None:
    """Answer a message that will never be handled: its asker and its carried future alike."""
    if envelope.reply_to is not None:
        if isinstance(envelope.message, messages._ActorStop):  # noqa: SLF001 - pykka's stop
            settle(envelope.reply_to, None)
        else:
            fail(envelope.reply_to, error)
    answer_carried(envelope.message, error)


class Supervised(pykka.Actor):
    """The supervision rules shared by every engine actor (mix in before the pykka actor type).

    Subclasses set ``actor_kind`` and ``policy``. ``"resume"`` keeps the actor running after a
    failure inside a handler (the failing message's carried future is answered); ``"stop"`` lets
    pykka stop it (``on_failure`` then runs: the aggregate registry restarts on demand there).
    """

    actor_kind: ClassVar[str] = "actor"
    policy: ClassVar[Literal["resume", "stop"]] = "stop"
    fault_seam: FaultSeam | None = None
    redeliver: ClassVar[tuple[type, ...]] = ()
    """Control messages (idempotent, carrying no caller) retried after a failure, not lost."""
    _failure: EngineError | None = None
    _redeliveries: dict[int, int] | None = None

    def _fault_seam(self) -> FaultSeam | None:
        # A method, so that light actors can keep the seam in a shared object, not per instance.
        return self.fault_seam

    def _handle_receive(self, message: Any) -> Any:
        seam = self._fault_seam()
        try:
            if seam is not None:
                seam(self.actor_kind, message)
            result = super()._handle_receive(message)
        except EngineError as error:
            # The caller's future first: pykka's failure path knows nothing about it.
            answer_carried(message, error)
            raise
        except Exception as error:
            # Not a typed error: a fault or a bug. An asker gets it typed (pykka hands whatever
            # a handler raised to the asker), with the original chained for the traceback.
            failed = ActorFailed(self.actor_kind, repr(error))
            answer_carried(message, failed)
            if self.policy == "resume" and isinstance(message, self.redeliver):
                self._redeliver(message)
            raise failed from error
        if self._redeliveries:
            self._redeliveries.pop(id(message), None)
        return result

    def _redeliver(self, message: Any) -> None:
        # A lost control message leaves a protocol half done (a view never retried, an
        # aggregate waiting for its resync for ever): it goes to the back of the inbox again,
        # a few times, so a transient fault costs a retry and a persistent bug cannot spin.
        if self._redeliveries is None:
            self._redeliveries = {}
        attempts = self._redeliveries.get(id(message), 0) + 1
        if attempts > _MAX_REDELIVERIES:
            self._redeliveries.pop(id(message), None)
            log.error("message_dropped", actor=self.actor_kind, message=type(message).__name__)
            return
        self._redeliveries[id(message)] = attempts
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            self._redeliveries.pop(id(message), None)  # stopping: teardown answers the rest
        else:
            log.warning(
                "message_redelivered",
                actor=self.actor_kind,
                message=type(message).__name__,
                attempts=attempts,
            )

    def _handle_failure(self, *exc_info: Any) -> None:
        error = exc_info[1]
        if self.policy == "resume":
            log.error(
                "actor_failure_resumed", actor=self.actor_kind, error=repr(error), exc_info=exc_info
            )
            self.on_resume()
            return
        self._failure = ActorFailed(self.actor_kind, repr(error))
        super()._handle_failure(*exc_info)

    def on_resume(self) -> None:
        """Called after a failure the actor survives (``"resume"``), before the next message.

        pykka then calls ``on_failure`` as well, except for a failure in ``on_start``.
        """

    def _stopped_error(self) -> EngineError:
        """What the messages left at stop are answered with."""
        if self._failure is not None:
            return self._failure
        return EngineClosed(
            f"the engine is closing: the {self.actor_kind} stopped before handling this request"
        )

    def _actor_loop_teardown(self) -> None:
        # pykka's teardown answers asks with a bare ActorDeadError and drops everything else.
        error = self._stopped_error()
        inbox = self.actor_inbox
        while not inbox.empty():
            answer_envelope(inbox.get(), error)


def _translated(closed: bool, error: Exception) -> Exception:
    """The typed error a public call raises for ``error`` (``error`` itself if it is fine)."""
    if isinstance(error, EngineError):
        return error
    if closed:
        # A call that raced close(): whatever it hit (a stopped actor, a closed environment),
        # the one true answer is that the engine is closed.
        return EngineClosed()
    if isinstance(error, pykka.ActorDeadError):
        return ActorFailed("engine actor", repr(error))
    if isinstance(error, pykka.Timeout):
        return EngineError(f"an engine actor did not answer in time ({error}); retry")
    return error


def guarded(method: Callable[Concatenate[_E, _P], _R]) -> Callable[Concatenate[_E, _P], _R]:
    """Make an engine method raise only typed errors: ``EngineClosed`` after (or racing) close.

    A bare ``pykka.ActorDeadError`` or ``pykka.Timeout`` never reaches the caller; other
    exceptions (a bug, a user callback's error) pass through unchanged.
    """

    @functools.wraps(method)
    def call(self: _E, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self.closed:
            raise EngineClosed
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            translated = _translated(self.closed, error)
            if translated is error:
                raise
            raise translated from error

    return call


def guarded_async(
    method: Callable[Concatenate[_E, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[_E, _P], Coroutine[Any, Any, _R]]:
    """:func:`guarded` for coroutine methods."""

    @functools.wraps(method)
    async def call(self: _E, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self.closed:
            raise EngineClosed
        try:
            return await method(self, *args, **kwargs)
        except Exception as error:
            translated = _translated(self.closed, error)
            if translated is error:
                raise
            raise translated from error

    return call
