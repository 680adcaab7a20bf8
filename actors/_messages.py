"""Messages between the engine, the aggregates, the log writer, the projectors, the router.

They are small frozen structs; futures travel inside them because actors on the dispatcher never
block on each other: an aggregate hands its caller's future on to the writer, and the writer
resolves it once the events are committed.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
import pykka

from store import StreamAppend

__all__ = [
    "AppendCommand",
    "BoundLag",
    "CatchUp",
    "CommandResult",
    "Execute",
    "HeadAdvanced",
    "Passivate",
    "Reload",
    "ReloadNow",
    "Resync",
    "RetryDue",
    "RetryParked",
    "RetryView",
    "Swap",
    "Teller",
    "ViewAdvanced",
]


class Teller(Protocol):
    """Anything told messages without waiting: an actor ref, or a forwarder to another process."""

    def tell(self, message: Any) -> None:
        """Deliver ``message`` without waiting."""
        ...


class CommandResult(msgspec.Struct, frozen=True):
    """What an accepted command produced.

    Attributes:
        aggregate_id: The aggregate the command was aimed at.
        version: The aggregate's version after the command.
        position: Global position of the command's last event.
        events: The committed domain events, in order.
        shard: The shard that ran the command (``cluster.ShardedEngine``; 0 on a single
            ``Engine``). ``position`` is a position in that shard's log.
    """

    aggregate_id: str
    version: int
    position: int
    events: tuple[msgspec.Struct, ...] = ()
    shard: int = 0


class Execute(msgspec.Struct, frozen=True, gc=False):
    """Engine -> aggregate: run ``command`` and resolve ``reply`` when it is committed.

    Untracked by the cyclic collector (``gc=False``): one per command in flight, and nothing it
    holds can refer back to it (a command, its future, a fingerprint).
    """

    command: Any
    reply: pykka.Future[CommandResult]
    fingerprint: bytes  # computed at the door, where duplicates in flight are caught


class AppendCommand(msgspec.Struct, frozen=True, gc=False):
    """Aggregate -> writer: commit one command's events, then resolve ``reply``.

    ``owner`` is told to :class:`Reload` if the append cannot be committed.

    Untracked by the cyclic collector (``gc=False``), as :class:`Execute`: one per command in
    flight. It is part of a cycle only while it waits in the writer's inbox (``owner`` reaches
    the writer's inbox through the aggregate's kit), and the writer answers and drops every
    queued append, at stop too; a cycle through an untracked object would never be collected.
    """

    append: StreamAppend
    aggregate_id: str
    reply: pykka.Future[CommandResult]
    owner: pykka.ActorRef[Any]


class Resync(msgspec.Struct, frozen=True):
    """Aggregate -> writer: everything I sent before this is settled; tell me to reload."""

    stream_id: str
    owner: pykka.ActorRef[Any]
    stream_type: str


class Reload(msgspec.Struct, frozen=True):
    """Writer -> aggregate: a commit of yours failed; your state may hold uncommitted events."""


class ReloadNow(msgspec.Struct, frozen=True):
    """Writer -> aggregate: all your earlier appends are settled; reload from the log now."""


class Passivate(msgspec.Struct, frozen=True):
    """Registry -> aggregate: stop if nothing of yours is in flight."""


class HeadAdvanced(msgspec.Struct, frozen=True):
    """Writer -> projectors: the log's head moved to ``head``."""

    head: int


# ------------------------------------------------------------ projectors


class CatchUp(msgspec.Struct, frozen=True):
    """Projector -> itself: apply the next batch if behind."""


class BoundLag(msgspec.Struct, frozen=True):
    """Engine -> projector: hold the engine's door while the views lag (``max_view_lag``).

    ``bound`` is an :class:`~actors._lag_bound.LagBound`.
    """

    bound: Any


class Swap(msgspec.Struct, frozen=True):
    """ReadSide -> projector: catch ``shadow`` up with the live view ``view``, then adopt it.

    ``reparked`` holds the positions the rebuild parked again: every other parked event of the
    view, up to the adopted position, applied fine in the new copy and is unparked.
    """

    view: str
    shadow: Any
    reparked: frozenset[int] = frozenset()


class RetryParked(msgspec.Struct, frozen=True):
    """Engine -> projector: apply a parked event of ``view`` again."""

    view: str
    position: int


class RetryView(msgspec.Struct, frozen=True):
    """Engine -> projector: try ``view`` again now (stalled or retrying), from a fresh episode."""

    view: str


class RetryDue(msgspec.Struct, frozen=True):
    """Retry timer -> projector: ``view``'s automatic retry ``token`` is due."""

    view: str
    token: int


class ViewAdvanced(msgspec.Struct, frozen=True):
    """Projector -> router: views reached these positions (view name -> position)."""

    positions: dict[str, int]
