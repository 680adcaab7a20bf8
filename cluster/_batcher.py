"""The client side of the command hop: one batcher thread per shard, one future per command.

A Ray call costs about 0.6 ms, so commands travel to their shard in batches. Each shard has a
queue and a thread. When no batch of that shard is in flight, a command leaves at once (lowest
latency); while batches are in flight, commands gather for up to ``window`` seconds or until
``max_commands`` are queued, and go together in one call. At most ``max_in_flight`` batches
per shard are in flight: that bounds what a slow shard can pile up. Batches leave in queue order
and the shard hands them to its engine in that order, so per aggregate, commands are applied in
the order they were submitted (from one thread; across threads, in the order they reached the
queue).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import threading
import time
from collections import deque
from typing import Any, Final, Generic, TypeVar

import pykka

from actors._future import DispatcherFuture, bridge
from cluster._ray import ShardHandle, failure_of
from cluster._shard import LOST, Failure
from domain.errors import EngineClosed, ShardUnavailable

__all__ = ["ShardBatcher", "ShardFuture"]

T = TypeVar("T")

_COLLECT_TIMEOUT: Final = 300.0  # a shard answers every batch by then (each command times out)


class ShardFuture(Generic[T]):
    """The pending outcome of one command sent to a shard.

    Attributes:
        shard: The shard the command went to.
    """

    def __init__(self, shard: int) -> None:
        self.shard = shard
        # The engine's light future: `concurrent.futures.Future` builds a Condition per command,
        # which was the largest cost on the client's thread at 15k commands/s.
        self._future: DispatcherFuture[T] = DispatcherFuture()

    def get(self, timeout: float | None = None) -> T:
        """Wait for the outcome and return it (or raise the command's error).

        Raises:
            ShardUnavailable: No answer within ``timeout`` (the shard is down, restarting or
                overloaded), or the shard's process died with the command: it may or may not
                have committed; re-send it with the same ``command_id``.
            EngineError: The command's own error (rejected, not found, conflict...).
        """
        try:
            return self._future.get(timeout=timeout)
        except pykka.Timeout:
            raise ShardUnavailable(
                self.shard, f"no answer within {timeout:g} s: down, restarting or overloaded"
            ) from None

    def done(self) -> bool:
        """Whether the outcome is known."""
        return self._future.done()

    async def get_async(self, timeout: float) -> T:
        """Like :meth:`get`, without blocking the event loop."""
        try:
            result: T = await asyncio.wait_for(bridge(self._future), timeout)
        except TimeoutError:
            raise ShardUnavailable(
                self.shard, f"no answer within {timeout:g} s: down, restarting or overloaded"
            ) from None
        return result

    def resolve(self, outcome: Any) -> None:
        """Set the outcome (a result, an error or a shard's ``Failure``) unless already set."""
        if isinstance(outcome, Failure):
            outcome = outcome.error
        try:
            if isinstance(outcome, BaseException):
                self._future.set_exception((type(outcome), outcome, outcome.__traceback__))
            else:
                self._future.set(outcome)
        except queue.Full:
            pass  # already resolved (a batch failed after some of its answers were set)


class ShardBatcher:
    """Sends the commands of one shard in batches; see the module docstring.

    Args:
        handle: The shard.
        max_commands: Most commands per batch.
        window: Seconds a batch waits for more commands while others are in flight.
        max_in_flight: Most batches in flight at once.
    """

    def __init__(
        self, handle: ShardHandle, *, max_commands: int, window: float, max_in_flight: int
    ) -> None:
        self._handle = handle
        self._max_commands = max_commands
        self._window = window
        self._queue: deque[tuple[Any, ShardFuture[Any]]] = deque()
        self._wake = threading.Condition()
        self._in_flight = 0
        self._max_in_flight = max_in_flight
        self._closing = False
        self._batch_ids = itertools.count()
        self._thread = threading.Thread(
            target=self._run, name=f"shard-{handle.index}-batcher", daemon=True
        )
        self._thread.start()

    def put(self, command: Any) -> ShardFuture[Any]:
        """Queue ``command`` for the shard; the future resolves with its outcome.

        Raises:
            EngineClosed: The batcher is closing.
        """
        future: ShardFuture[Any] = ShardFuture(self._handle.index)
        with self._wake:
            if self._closing:
                raise EngineClosed("the sharded engine is closed; open a new ShardedEngine")
            self._queue.append((command, future))
            self._wake.notify_all()
        return future

    def close(self, timeout: float) -> None:
        """Send what is queued, wait (up to ``timeout``) for batches in flight, stop the thread."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._thread.join(timeout)
        with self._wake:
            self._wake.wait_for(lambda: self._in_flight == 0, max(0.0, deadline - time.monotonic()))
            left = list(self._queue)
            self._queue.clear()
        for _, future in left:  # only if the thread is stuck: never leave a caller hanging
            future.resolve(EngineClosed("the sharded engine closed before this command was sent"))

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return  # closing, nothing left
                if self._in_flight and not self._closing:
                    # Others are in flight: gather more for a moment.
                    deadline = time.monotonic() + self._window
                    while len(self._queue) < self._max_commands and not self._closing:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._wake.wait(remaining)
                # A free slot bounds what a slow shard piles up; commands keep queueing.
                self._wake.wait_for(lambda: self._in_flight < self._max_in_flight)
                count = min(len(self._queue), self._max_commands)
                batch = [self._queue.popleft() for _ in range(count)]
                self._in_flight += 1
            self._send(batch)

    def _send(self, batch: list[tuple[Any, ShardFuture[Any]]]) -> None:
        batch_id = next(self._batch_ids)
        try:
            submitted = self._handle.call("submit_batch", batch_id, [c for c, _ in batch])
            # `submitted` resolves to the incarnation that took the batch; Ray runs `collect`
            # only after it, and fails it at once if `submit_batch` failed.
            answers = self._handle.call("collect", submitted, batch_id, _COLLECT_TIMEOUT)
            answers.future().add_done_callback(lambda done: self._settle(batch, done))
        except Exception as error:  # noqa: BLE001 - every caller of the batch hears of it
            self._fail(batch, failure_of(self._handle.index, error))
            self._release()

    def _settle(
        self, batch: list[tuple[Any, ShardFuture[Any]]], done: concurrent.futures.Future[Any]
    ) -> None:
        try:
            error = done.exception()
            if error is not None:
                self._fail(batch, failure_of(self._handle.index, error))
                return
            outcomes = done.result()
            if outcomes == LOST:
                self._fail(
                    batch,
                    ShardUnavailable(self._handle.index, "its process restarted with the batch"),
                )
                return
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                future.resolve(outcome)
        finally:
            self._release()

    @staticmethod
    def _fail(batch: list[tuple[Any, ShardFuture[Any]]], error: BaseException) -> None:
        for _, future in batch:
            future.resolve(error)

    def _release(self) -> None:
        with self._wake:
            self._in_flight -= 1
            self._wake.notify_all()
