"""What ``Engine.status()`` answers: one snapshot of the engine's state."""

from __future__ import annotations

import msgspec

from actors._progress import ViewStatus
from actors._projection_process import ProjectionStatus
from actors._saga_spec import SagaStatus

__all__ = ["EngineStatus"]


class EngineStatus(msgspec.Struct, frozen=True):
    """A snapshot of the engine's state (see the contract).

    Attributes:
        head: Last committed position.
        views: Per view: position, lag in events and seconds, parked events, and its health
            (``state`` ok / retrying / stalled, ``error``, ``attempts``; see ``ViewStatus``).
        live_aggregates: Aggregate actors in memory now.
        parked_events: Poison events parked, over all views.
        durability: ``"sync"`` or ``"async"``.
        in_flight: Commands submitted and not yet acknowledged.
        queries_waiting: Queries parked until their view reaches the position they asked for.
        file_size: Size of the data file in bytes.
        views_recovered: Why the views environment was wiped and rebuilt from the log at open
            (an OS crash with unflushed view writes, a damaged file, checkpoints ahead of the
            log), or ``""``.
        idempotency_entries: Command ids the idempotency table answers for (its rows).
        idempotency_oldest: Unix time (seconds, UTC) of the oldest command it may still
            answer for (the first event past the pruning cursor), or None when it is empty.
        log_dictionary: Id of the zstd dictionary new log records are compressed with (0: they
            are stored plain, until the first is trained at 10k events; see
            ``store._training``). Over shards: the lowest, so 0 while any shard is plain.
        sagas: Per saga: position, lag, health (``state`` ok / retrying, ``error``,
            ``attempts``) and the commands it issued and had rejected (see ``SagaStatus``).
        projection: The projection process (``Engine.open(projection="process")``): state,
            pid, restarts, the views it keeps (see ``ProjectionStatus``); None in-process.
    """

    head: int
    views: dict[str, ViewStatus]
    live_aggregates: int
    parked_events: int
    durability: str
    in_flight: int = 0
    queries_waiting: int = 0
    file_size: int = 0
    views_recovered: str = ""
    idempotency_entries: int = 0
    idempotency_oldest: float | None = None
    log_dictionary: int = 0
    sagas: dict[str, SagaStatus] = msgspec.field(default_factory=dict)
    projection: ProjectionStatus | None = None
