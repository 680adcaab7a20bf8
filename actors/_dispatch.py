"""A pykka actor type that runs many actors on a small shared pool of worker threads.

`pykka.ThreadingActor` gives every actor an OS thread: 8 MiB of stack, ~0.3 ms to start, and the
scheduler collapses beyond a few thousand of them. `DispatcherActor` keeps pykka's whole actor
model (`ActorRef`, `tell`/`ask`, proxies, futures, `on_start`/`on_stop`/`on_failure`) but plugs
into pykka's seam for new actor types (`_create_actor_inbox`, `_create_future`,
`_start_actor_loop`): its inbox schedules the actor on a `Dispatcher` when mail arrives, and a
worker runs it for a bounded turn. Exactly one worker runs a given actor at a time, so its messages
are handled strictly one after another, in arrival order.

Handlers on a dispatcher must never block on another actor (no `future.get()`): a blocked worker
stalls every actor behind it. Hand futures on instead (see `DispatcherFuture.add_done_callback`).

Dispatcher actors are not put in pykka's `ActorRegistry`: the registry is a list, so registering
100k actors makes every unregistration O(n). Whoever starts them (the engine) stops them.
"""

# The seam is pykka's private API (pinned to 4.5.x, guarded by tests/actors/test_pykka_seam.py):
# this module necessarily reaches into pykka internals and into its own actors' private hooks.
# ruff: noqa: SLF001

from __future__ import annotations

import gc
import itertools
import queue
import sys
import threading
import uuid
from collections import deque
from typing import Any, ClassVar, Self, TypeVar

import pykka
from pykka import ActorDeadError, ActorRef, ActorRegistry
from pykka._envelope import Envelope

from actors._future import DispatcherFuture, StopFlag
from store import get_logger

__all__ = ["Dispatcher", "DispatcherActor", "DispatcherFuture", "default_dispatcher", "freeze_gc"]

# DispatcherFuture and the light stop flag live in actors/_future.py; re-exported here because
# this module is where pykka's _create_future seam hands them out.

T = TypeVar("T")

log = get_logger(__name__)


class _Mailbox:
    """A dispatcher actor's inbox (pykka's `ActorInbox` protocol) plus its scheduling state.

    `scheduled` is the run token: whoever flips it to True (a sender, or the start) hands the actor
    to the dispatcher, and only the worker holding it touches the actor. The flag and the emptiness
    of `queue` change together under `lock`, so a sender can never append just after the worker
    saw an empty queue but before it dropped the token (the lost wake-up). The worker pops without
    the lock: deque append/popleft are atomic and only the token holder pops.
    """

    __slots__ = ("actor", "dead", "dispatcher", "lock", "queue", "scheduled", "started", "urn")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: deque[Envelope[Any]] = deque()
        # Held from birth: mail sent from __init__ waits until start() hands the actor over.
        self.scheduled = True
        self.started = False
        self.dead = False
        self.actor: DispatcherActor | None = None  # strong: it is what keeps an idle actor alive
        self.dispatcher: Dispatcher | None = None
        self.urn = ""

    def put(self, envelope: Envelope[Any], /) -> None:
        """Enqueue `envelope` and schedule the actor unless it already is.

        On a dead inbox an ask's future fails with `ActorDeadError` (as `ActorRef.ask` does for a
        stopped `ThreadingActor`) and a tell raises `ActorDeadError` (as `ActorRef.tell` does).
        Checking under the lock closes pykka's stop race: `ActorRef` tests `is_alive()` before
        `put`, and a message put after the final drain would otherwise be lost and its ask hang.
        """
        with self.lock:
            if not self.dead:
                self.queue.append(envelope)
                if self.scheduled:
                    return
                self.scheduled = True
        if self.dispatcher is None or self.actor is None:
            self.reject(envelope)
            return
        self.dispatcher.submit(self.actor)

    def get(self) -> Envelope[Any]:
        """Pop the oldest envelope without blocking (raises IndexError when empty)."""
        return self.queue.popleft()

    def empty(self) -> bool:
        """Return whether no envelope is waiting."""
        return not self.queue

    def reject(self, envelope: Envelope[Any]) -> None:
        """Refuse mail for a dead actor: fail the ask, or raise for a tell."""
        error = ActorDeadError(f"Actor {self.urn} is dead")
        if envelope.reply_to is None:
            raise error
        envelope.reply_to.set_exception((ActorDeadError, error, None))


# Actor URNs: the first 80 bits of a random UUID drawn once, then a counter: unique within the
# process (and, by the random part, practically across processes), in the form pykka's URNs take.
_URN_HEAD: str = str(uuid.uuid4())[:23]  # "xxxxxxxx-xxxx-xxxx-xxxx"
_urn_numbers = itertools.count(1)


def _next_urn() -> str:
    return f"urn:uuid:{_URN_HEAD}-{next(_urn_numbers):012x}"


class DispatcherActor(pykka.Actor):
    """A pykka actor that runs on a `Dispatcher` instead of its own thread.

    Subclass it exactly like `pykka.ThreadingActor`. `start()` runs it on the class attribute
    `dispatcher`, or on `default_dispatcher()` when that is None; `start_on(dispatcher, ...)` picks
    the dispatcher per actor (engines own theirs). Unlike `ThreadingActor`, it is not registered
    in `ActorRegistry`, and exceptions returned to an asker are not logged (they are the caller's
    business, and common for domain errors).
    """

    dispatcher: ClassVar[Dispatcher | None] = None
    actor_inbox: _Mailbox

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002 - pykka's signature
        # What pykka's Actor.__init__ sets, made cheaper (it is not called): its uuid4() reads
        # os.urandom, a syscall that lets go of the GIL, which under load cost the thread that
        # activates an aggregate ~8% of its time; and its threading.Event is a light flag here.
        self.actor_urn = _next_urn()
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = StopFlag()
        self._actor_ref = ActorRef(self)

    @classmethod
    def start(cls, *args: object, **kwargs: object) -> ActorRef[Self]:
        """Start the actor on `cls.dispatcher` (or the default one); see `start_on`."""
        return cls.start_on(cls.dispatcher or default_dispatcher(), *args, **kwargs)

    @classmethod
    def start_on(cls, dispatcher: Dispatcher, /, *args: object, **kwargs: object) -> ActorRef[Self]:
        """Create the actor with `cls(*args, **kwargs)` and run it on `dispatcher`.

        `on_start` runs on a worker before any message. Deliberately not registered in
        `ActorRegistry` (O(n) unregistration); stop the actor yourself.

        Returns:
            The actor's ref.
        """
        obj = cls(*args, **kwargs)
        if getattr(obj, "_actor_ref", None) is None:
            raise TypeError(f"{cls.__name__}.__init__ did not call super().__init__()")
        obj.actor_inbox.dispatcher = dispatcher
        obj._start_actor_loop()
        return obj.actor_ref

    @staticmethod
    def _create_actor_inbox() -> _Mailbox:
        # Static in pykka, called from Actor.__init__ before the subclass knows its dispatcher:
        # the inbox is born unbound and _start_actor_loop binds it.
        return _Mailbox()

    @staticmethod
    def _create_future() -> DispatcherFuture[Any]:
        return DispatcherFuture()

    def _start_actor_loop(self) -> None:
        mailbox = self.actor_inbox
        if mailbox.dispatcher is None:
            mailbox.dispatcher = type(self).dispatcher or default_dispatcher()
        mailbox.actor = self
        mailbox.urn = self.actor_urn
        # The mailbox holds the run token since birth: the first turn runs on_start.
        mailbox.dispatcher.submit(self)

    def _dispatch_turn(self, throughput: int) -> None:
        """Run on_start if due, then up to `throughput` messages (pykka's loop, one slice)."""
        mailbox = self.actor_inbox
        stopped = self.actor_stopped
        if not mailbox.started:
            mailbox.started = True
            self._actor_loop_setup()
        pending = mailbox.queue
        for _ in range(throughput):
            if stopped.is_set() or not pending:
                break
            self._dispatch_one(pending.popleft())
        if stopped.is_set():
            self._dispatch_teardown()
            return
        with mailbox.lock:
            if not pending:
                mailbox.scheduled = False
                return
        # Mail remains: keep the token and queue behind the other runnable actors (fairness).
        if mailbox.dispatcher is not None:
            mailbox.dispatcher.submit(self)

    def _dispatch_one(self, envelope: Envelope[Any]) -> None:
        """Handle one message with the semantics of pykka.Actor._actor_loop_running."""
        response: Any = None
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:  # noqa: BLE001 - pykka's contract: to the asker, or to on_failure
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:  # noqa: BLE001 - pykka's contract: log it, stop the actor
                    self._handle_failure(*sys.exc_info())
        except BaseException as exc:  # noqa: BLE001 - pykka stops everything on these
            log.warning("actor_base_exception", actor=str(self), error=repr(exc))
            self._stop()
            # Not blocking: a worker must never wait on other actors.
            ActorRegistry.stop_all(block=False)
        finally:
            # A failed future's traceback keeps this frame, and so its locals: drop the message
            # objects so that they do not outlive the message (nor form cycles for the GC).
            del envelope, response

    def _dispatch_teardown(self) -> None:
        """Close the inbox, then fail what is left in it (pykka's _actor_loop_teardown)."""
        mailbox = self.actor_inbox
        with mailbox.lock:
            # Dead first, under the lock: from now on put() refuses, so the drain below is final.
            mailbox.dead = True
            mailbox.actor = None  # breaks the actor <-> inbox cycle: refcounting frees it
        # pykka's teardown hook (it drains through the inbox's empty()/get()), so that a subclass
        # that answers leftovers its own way does it for both actor types.
        self._actor_loop_teardown()

    def _dispatch_kill(self) -> None:
        """Stop without on_stop: the dispatcher is gone, there is no thread to run it on."""
        if not self.actor_inbox.dead:
            self.actor_stopped.set()
            self._dispatch_teardown()


class Dispatcher:
    """A pool of worker threads that run `DispatcherActor` turns.

    Args:
        workers: number of worker threads. One is usually best under the GIL.
        name: thread name prefix.
        throughput: messages an actor may handle per turn before it queues behind the others.
        daemon: whether the workers are daemon threads. Default False: an owned dispatcher is
            shut down explicitly with `shutdown()`, and non-daemon workers are never cut off in the
            middle of a handler at interpreter exit.
    """

    def __init__(
        self, workers: int = 1, name: str = "dispatch", throughput: int = 8, *, daemon: bool = False
    ) -> None:
        if workers < 1 or throughput < 1:
            raise ValueError("workers and throughput must be >= 1")
        self.name = name
        self.throughput = throughput
        # C-implemented FIFO of runnable actors; None tells a worker to exit.
        self._runq: queue.SimpleQueue[DispatcherActor | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=daemon)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def closed(self) -> bool:
        """Whether `shutdown()` has been called."""
        return self._closed

    def submit(self, actor: DispatcherActor) -> None:
        """Queue a runnable actor (the caller holds its run token)."""
        # Under the lock so that nothing can slip into the run queue after shutdown drained it.
        with self._lock:
            if not self._closed:
                self._runq.put(actor)
                return
        actor._dispatch_kill()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop the workers after the turns already queued, and kill actors left with mail.

        Stop the actors first: actors that get mail after the shutdown are stopped without
        `on_stop` and their asks fail with `ActorDeadError` (nothing hangs). Idempotent.

        Args:
            timeout: seconds to wait for the workers (each), None to wait for ever.

        Returns:
            True if every worker exited, False if one is still busy after `timeout`.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                for _ in self._threads:
                    self._runq.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        if any(thread.is_alive() for thread in self._threads):
            return False
        while True:
            try:
                actor = self._runq.get_nowait()
            except queue.Empty:
                return True
            if actor is not None:
                actor._dispatch_kill()

    def _work(self) -> None:
        runq = self._runq
        throughput = self.throughput
        while (actor := runq.get()) is not None:
            try:
                actor._dispatch_turn(throughput)
            except BaseException:
                # Only a BaseException from on_start/on_stop gets here: the worker outlives it,
                # and the actor is closed so that no ask on it hangs.
                log.exception("dispatcher_turn_failed", actor=str(actor))
                actor._dispatch_kill()
            del actor  # an idle worker must not keep the last actor alive


_default: Dispatcher | None = None
_default_lock = threading.Lock()


def default_dispatcher() -> Dispatcher:
    """Return the process-wide dispatcher, created on first use (1 daemon worker).

    Its worker is a daemon thread because nobody owns it to shut it down; engines should create
    and shut down their own `Dispatcher` instead.
    """
    global _default  # noqa: PLW0603 - a lazily created process-wide singleton
    with _default_lock:
        if _default is None or _default.closed:
            _default = Dispatcher(name="dispatch-default", daemon=True)
        return _default


def freeze_gc() -> int:
    """Move every object alive now to the GC's permanent generation; return how many are frozen.

    Call it after bulk activation or replay (e.g. once 100k aggregates are live), not per
    activation: the cyclic collector then stops rescanning those long-lived objects, which
    otherwise cut throughput ~3x. Frozen objects are still freed by reference counting, but
    frozen garbage cycles leak until `gc.unfreeze()`; stopped dispatcher actors break their own
    cycle, so they are freed.
    """
    gc.freeze()
    return gc.get_freeze_count()
