"""Light futures and flags for actors on the dispatcher, and their bridge to asyncio.

pykka's `ThreadingFuture` and the `threading.Event` every actor gets as its stopped flag each build
a Python-level `Condition`: at tens of thousands of commands per second that was the largest cost
of a submit, and a sixth of a live actor's memory. These create their waiting machinery only when
somebody actually blocks.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

import pykka
from pykka._future import GetHookFunc, _Unset
from pykka._types import OptExcInfo

from store import get_logger

__all__ = ["CommandFuture", "DispatcherFuture", "StopFlag", "bridge"]

T = TypeVar("T")

log = get_logger(__name__)

# One lock for every future's tiny critical sections: a lock per future would cost memory for
# each of the many futures in flight, and these sections never block.
_FUTURES_LOCK = threading.Lock()
_PENDING, _VALUE, _ERROR = 0, 1, 2
# pykka's `Future.__init__` makes a fresh `_Unset()` marker per future, an object the cyclic
# collector tracks, one more per command in flight; pykka only ever tests it with isinstance,
# so every future here shares one.
_UNSET: Final = _Unset()


class DispatcherFuture(pykka.Future[T]):
    """A light pykka future that can also call back when it is resolved.

    `pykka.ThreadingFuture` builds a `threading.Condition` (two Python-level objects and an RLock)
    for every future: at tens of thousands of commands per second that was the largest cost of a
    submit. This one keeps a state flag and creates a `threading.Event` only when somebody
    actually blocks in `get()`.

    Callbacks bridge to other worlds without blocking a thread: to asyncio with
    `loop.call_soon_threadsafe`, or to release a backpressure permit. Each callback is called
    exactly once, with the future, in the thread that resolves it (a dispatcher worker, usually:
    keep callbacks short and non-blocking), or at once in the registering thread if the future is
    already resolved. A callback that raises is logged and the others still run.

    Futures derived with `map`/`join`/`filter`/`reduce` (and the one `ActorRef.stop` returns) are
    lazy: they compute their value in `get()` and are never resolved by anyone, so `done()` stays
    False and `add_done_callback` raises `TypeError`: attach the callback to the source future.
    """

    def __init__(self) -> None:
        # Not pykka's __init__: it only sets these two, with a marker object of its own.
        self._get_hook: GetHookFunc[T] | None = None
        self._get_hook_result: Any = _UNSET
        self._state = _PENDING
        self._value: Any = None
        self._exc_info: OptExcInfo | None = None
        self._event: threading.Event | None = None
        # One callback as itself, more in a list: a command's future has exactly one (see
        # CommandFuture), and a list per command in flight would be one more object for the
        # cyclic collector to walk.
        self._callbacks: (
            Callable[[DispatcherFuture[T]], object]
            | list[Callable[[DispatcherFuture[T]], object]]
            | None
        ) = None

    def done(self) -> bool:
        """Return whether `set()` or `set_exception()` has been called."""
        return self._state != _PENDING

    def get(self, *, timeout: float | None = None) -> T:
        """Return the value (or raise the exception), waiting up to `timeout` seconds.

        Raises:
            pykka.Timeout: The future was not resolved in time.
        """
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if self._state == _PENDING:
            with _FUTURES_LOCK:
                event = self._event
                if event is None and self._state == _PENDING:
                    event = self._event = threading.Event()
            if event is not None and not event.wait(timeout) and self._state == _PENDING:
                raise pykka.Timeout(f"{timeout} seconds")
        if self._state == _ERROR:
            assert self._exc_info is not None  # noqa: S101 - set together with the state
            exc_type, exc_value, traceback = self._exc_info
            if exc_value is None:
                assert exc_type is not None  # noqa: S101 - pykka's exc_info contract
                exc_value = exc_type()
            if exc_value.__traceback__ is not traceback:
                raise exc_value.with_traceback(traceback)
            raise exc_value
        value: T = self._value
        return value

    def add_done_callback(self, fn: Callable[[DispatcherFuture[T]], object]) -> None:
        """Call `fn(self)` once the future is resolved, or now if it already is.

        Raises:
            TypeError: if the future is a lazy derived future (it has a get hook).
        """
        with _FUTURES_LOCK:
            if self._get_hook is not None:
                raise TypeError("a derived (get-hook) future is never resolved; use its source")
            if self._state == _PENDING:
                held = self._callbacks
                if held is None:
                    self._callbacks = fn
                elif isinstance(held, list):
                    held.append(fn)
                else:
                    self._callbacks = [held, fn]
                return
        self._invoke(fn)

    def set(self, value: T | None = None) -> None:
        """Resolve with `value`.

        Raises:
            queue.Full: The future was already resolved (as pykka's futures do).
        """
        self._resolve(_VALUE, value, None)

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        """Resolve with an exception (default: the one being handled).

        Raises:
            queue.Full: The future was already resolved (as pykka's futures do).
        """
        self._resolve(_ERROR, None, exc_info if exc_info is not None else sys.exc_info())

    def _resolve(self, state: int, value: Any, exc_info: OptExcInfo | None) -> None:
        with _FUTURES_LOCK:
            if self._state != _PENDING or self._get_hook is not None:
                raise queue.Full
            self._value = value
            self._exc_info = exc_info
            self._state = state
            event, callbacks, self._callbacks = self._event, self._callbacks, None
        if event is not None:
            event.set()
        if isinstance(callbacks, list):
            for fn in callbacks:
                self._invoke(fn)
        elif callbacks is not None:
            self._invoke(callbacks)

    def set_get_hook(self, func: GetHookFunc[T]) -> None:
        """Make this a lazy future computed by `func` in `get()`."""
        with _FUTURES_LOCK:
            if self._callbacks:
                raise TypeError("cannot turn a future with done callbacks into a derived future")
            if self._state != _PENDING:
                raise queue.Full
            super().set_get_hook(func)

    def _invoke(self, fn: Callable[[DispatcherFuture[T]], object]) -> None:
        try:
            fn(self)
        except Exception:
            # The resolving thread is a dispatcher worker: a bad callback must not kill it.
            log.exception("future_callback_failed", callback=repr(fn))


class CommandFuture(DispatcherFuture[T]):
    """The future of one submitted command: a :class:`DispatcherFuture` that knows its id.

    The engine gives every command's future one callback that both releases its in-flight
    permit and ends its idempotency entry; it reads the id from here, so that no closure or
    partial is made per command (objects the cyclic collector would walk while it is in flight).

    Args:
        command_id: The command's id.
    """

    def __init__(self, command_id: str) -> None:
        super().__init__()
        self.command_id = command_id


class StopFlag(threading.Event):
    """`threading.Event`'s interface without its Condition until somebody actually waits.

    pykka gives every actor a `threading.Event` as its stopped flag: a Condition, a lock and a
    deque, over 1 KiB per actor, for a flag that is only ever tested. At 100k live aggregates
    that was a sixth of their memory.
    """

    def __init__(self) -> None:
        self._is_set = False
        self._waiter: threading.Event | None = None

    def is_set(self) -> bool:
        """Return whether the flag is set."""
        return self._is_set

    def set(self) -> None:
        """Set the flag and wake any waiter."""
        with _FUTURES_LOCK:
            self._is_set = True
            waiter = self._waiter
        if waiter is not None:
            waiter.set()

    def clear(self) -> None:
        """Reset the flag."""
        with _FUTURES_LOCK:
            self._is_set = False
            if self._waiter is not None:
                self._waiter.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set (or ``timeout``); return whether it is set."""
        with _FUTURES_LOCK:
            if self._is_set:
                return True
            if self._waiter is None:
                self._waiter = threading.Event()
            waiter = self._waiter
        return waiter.wait(timeout)


async def bridge(future: pykka.Future[Any]) -> Any:
    """Await a dispatcher future from asyncio without blocking the event loop."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()

    def transfer(done: DispatcherFuture[Any]) -> None:
        try:
            loop.call_soon_threadsafe(_settle, done, waiter)
        except RuntimeError:
            # The loop closed after its caller gave up (CommandTimeout): nobody is waiting.
            # Unguarded, every such late commit logged an error from the writer's thread.
            log.debug("async_caller_gone")

    if not isinstance(future, DispatcherFuture):  # pragma: no cover - engine futures are
        return await loop.run_in_executor(None, future.get)
    future.add_done_callback(transfer)
    return await waiter


def _settle(done: DispatcherFuture[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.done():
        return
    try:
        waiter.set_result(done.get(timeout=0))
    except Exception as error:  # noqa: BLE001 - the awaiting coroutine gets the error
        waiter.set_exception(error)
