"""The engine seam of the HTTP app: one ``Engine``, or a sharded engine, behind the same routes.

The routes call the engine through :class:`ServedEngine` (``execute_async``, ``query_async``,
``closed``), which ``actors.Engine`` and ``cluster.ShardedEngine`` both satisfy as they are.
What differs is what a position means; :func:`reads_for` picks the :class:`Reads` that turns
the engine's positions into the API's and back:

- **One engine**: a read position is the global log position. ``?after=p`` waits for ``p``.
- **Shards** (:class:`ShardedServed`): a read position names a shard and a position in that
  shard's log, as one integer: ``position * shards + shard``. It stays an integer, so the
  published contract is the same (and with one shard it is the position itself); ``?after=``
  waits for that shard only, and is refused (409) beyond that shard's head. A client reading
  after several writes on different shards passes the position of the one it must see:
  positions of different shards are not ordered, so the largest does not cover the others.
  ``GET /status`` sums the shards' figures, each shard's status in ``shards``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import partial
from typing import Any, Protocol, runtime_checkable

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from actors import CommandResult, Engine, EngineStatus
from api._schemas import StatusAnswer
from api._shard_status import combine_status, healthy
from domain.errors import InvalidCommand
from domain.orders import ORDERS

__all__ = [
    "AfterBeyondHead",
    "LogReads",
    "Reads",
    "ServedEngine",
    "ShardReads",
    "ShardedServed",
    "reads_for",
]


@runtime_checkable
class ServedEngine(Protocol):
    """What the HTTP app calls on any engine it serves (``Engine`` and ``ShardedEngine`` fit)."""

    @property
    def closed(self) -> bool:
        """Whether the engine was closed (the app answers 503)."""
        ...

    async def execute_async(self, command: Any, *, timeout: float = ...) -> CommandResult:
        """Run a command; return once its events are committed."""
        ...

    async def query_async(self, query: Any, *, after: Any = None, timeout: float = ...) -> Any:
        """Answer a query once the engine has applied ``after``."""
        ...


@runtime_checkable
class ShardedServed(ServedEngine, Protocol):
    """What the app also calls on a sharded engine (``cluster.ShardedEngine`` fits)."""

    @property
    def shards(self) -> int:
        """How many shards there are."""
        ...

    def shard_of(self, aggregate_id: str) -> int:
        """Return the shard that owns ``aggregate_id``."""
        ...

    def heads(self, *, of: Collection[int] | None = ..., timeout: float = ...) -> dict[int, int]:
        """Return the last committed position of each shard asked."""
        ...

    def stream_head(
        self, aggregate_id: str, *, stream_type: str = ..., timeout: float = ...
    ) -> tuple[int, int]:
        """Return a stream's version and its last event's position in its shard's log."""
        ...

    def status(self, *, timeout: float = ...) -> Mapping[int, EngineStatus]:
        """Return each shard's status."""
        ...


class AfterBeyondHead(HTTPException):
    """``?after=`` names a position the log has not reached (answered with 409).

    Every position a command answers is at or below the head by then, so waiting could only be
    for a write nobody has made yet: the read is refused at once instead of timing out.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=409, detail=detail)


class Reads(Protocol):
    """The API's read positions over one kind of engine (see the module docstring)."""

    def position(self, result: CommandResult) -> int:
        """The read position to answer for an accepted command."""
        ...

    async def after(self, given: int | None, timeout: float, *, known: int | None = None) -> Any:
        """Turn read positions into the engine's ``after=`` (None: no wait).

        Args:
            given: The client's ``?after=``, checked against its log's head.
            timeout: Seconds to wait for a head.
            known: A position the server read itself (committed: not checked).

        Raises:
            AfterBeyondHead: ``given`` is beyond its log's head.
        """
        ...

    async def order_head(self, order_id: str, timeout: float) -> tuple[int, int]:
        """Return an order's version and the read position of its last event ((0, 0): none)."""
        ...

    async def status(self, timeout: float) -> StatusAnswer:
        """Return the body of ``GET /status``."""
        ...


class LogReads:
    """Read positions of one :class:`Engine`: global log positions."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def position(self, result: CommandResult) -> int:
        """The command's log position."""
        return result.position

    async def after(
        self, given: int | None, timeout: float, *, known: int | None = None
    ) -> int | None:
        """The larger position (it covers every earlier one); ``given`` checked against the head."""
        del timeout  # the head is a read of the local store: no wait
        if given is not None and given > (head := self._engine.store.head()):
            raise AfterBeyondHead(
                f"?after={given} is beyond the log's head ({head}): pass a position that a "
                "command answered"
            )
        if given is None or known is None:
            return known if given is None else given
        return max(given, known)

    async def order_head(self, order_id: str, timeout: float) -> tuple[int, int]:
        """Read the order's stream head from the store (on the thread pool)."""
        del timeout
        return await run_in_threadpool(_stream_head, self._engine, order_id)

    async def status(self, timeout: float) -> StatusAnswer:
        """The engine's status, and whether it is healthy."""
        del timeout
        current = await run_in_threadpool(self._engine.status)
        return StatusAnswer(**msgspec.structs.asdict(current), healthy=healthy(current))


def _stream_head(engine: Engine, order_id: str) -> tuple[int, int]:
    store = engine.store
    try:
        version = store.stream_version(order_id, stream_type=ORDERS.stream_type)
    except InvalidCommand:  # an id no order can have (NUL, too long): it does not exist
        return 0, 0
    if version == 0:
        return 0, 0
    # Events come from version `version` on: the first is the one that made this version.
    events = store.read_stream(order_id, version, stream_type=ORDERS.stream_type)
    return version, events[0].position


class ShardReads:
    """Read positions of a sharded engine: ``position * shards + shard`` (module docstring)."""

    def __init__(self, engine: ShardedServed) -> None:
        self._engine = engine
        self._shards = engine.shards

    def position(self, result: CommandResult) -> int:
        """The command's position in its shard's log, with the shard folded in."""
        return result.position * self._shards + result.shard

    async def after(
        self, given: int | None, timeout: float, *, known: int | None = None
    ) -> dict[int, int] | None:
        """A ``{shard: position}`` mapping; ``given`` checked against its shard's head."""
        wanted: dict[int, int] = {}
        if known is not None:
            position, shard = divmod(known, self._shards)
            wanted[shard] = position
        if given is None:
            return wanted or None
        position, shard = divmod(given, self._shards)
        if position == 0:  # nothing to wait for (nor to check)
            return wanted or None
        heads = await run_in_threadpool(partial(self._engine.heads, of=[shard], timeout=timeout))
        if position > heads[shard]:
            raise AfterBeyondHead(
                f"?after={given} is position {position} of shard {shard}, beyond that "
                f"shard's head ({heads[shard]}): pass a position that a command answered"
            )
        wanted[shard] = max(wanted.get(shard, 0), position)
        return wanted

    async def order_head(self, order_id: str, timeout: float) -> tuple[int, int]:
        """Ask the order's shard for its stream head."""
        version, position = await run_in_threadpool(
            partial(
                self._engine.stream_head,
                order_id,
                stream_type=ORDERS.stream_type,
                timeout=timeout,
            )
        )
        if version == 0:
            return 0, 0
        return version, position * self._shards + self._engine.shard_of(order_id)

    async def status(self, timeout: float) -> StatusAnswer:
        """The shards' figures summed; each shard's own status in ``shards``."""
        current = await run_in_threadpool(partial(self._engine.status, timeout=timeout))
        total = combine_status(current)
        return StatusAnswer(
            **msgspec.structs.asdict(total),
            healthy=all(healthy(status) for status in current.values()),
            shards={str(shard): status for shard, status in sorted(current.items())},
        )


def reads_for(engine: ServedEngine) -> Reads:
    """The :class:`Reads` of ``engine``.

    Raises:
        TypeError: ``engine`` is neither an ``Engine`` nor a :class:`ShardedServed`.
    """
    if isinstance(engine, Engine):
        return LogReads(engine)
    if isinstance(engine, ShardedServed):
        return ShardReads(engine)
    raise TypeError(
        f"cannot serve {type(engine).__name__}: pass an actors.Engine or a cluster.ShardedEngine"
    )
