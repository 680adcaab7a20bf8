"""One ``EngineStatus`` for a sharded engine: the shards' figures summed (``GET /status``).

Counts and sizes are summed over the shards (``head`` is then the number of events in every
shard's log, and a view's ``position`` how many of them it has applied), times and delays take
the worst shard, a view or saga takes the worst state of any shard, and errors are listed
with their shard. ``projection`` stays None here: each shard's is in its own status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from actors import EngineStatus, SagaStatus, ViewStatus

__all__ = ["combine_status", "healthy"]

T = TypeVar("T")

_SEVERITY: Final = {"ok": 0, "retrying": 1, "stalled": 2}


def healthy(status: EngineStatus) -> bool:
    """Whether no view has an error (stalled or retrying) or parked events."""
    return all(not view.error and not view.parked for view in status.views.values())


def combine_status(statuses: Mapping[int, EngineStatus]) -> EngineStatus:
    """Sum the statuses of every shard into one (see the module docstring).

    Args:
        statuses: Each shard's status, by shard (at least one).
    """
    shards = sorted(statuses.items())
    every = [status for _, status in shards]
    oldest = [s.idempotency_oldest for s in every if s.idempotency_oldest is not None]
    return EngineStatus(
        head=sum(s.head for s in every),
        views=_combine(shards, lambda s: s.views, _view),
        live_aggregates=sum(s.live_aggregates for s in every),
        parked_events=sum(s.parked_events for s in every),
        durability=every[0].durability,
        in_flight=sum(s.in_flight for s in every),
        queries_waiting=sum(s.queries_waiting for s in every),
        file_size=sum(s.file_size for s in every),
        views_recovered=_errors((shard, s.views_recovered) for shard, s in shards),
        idempotency_entries=sum(s.idempotency_entries for s in every),
        idempotency_oldest=min(oldest) if oldest else None,
        log_dictionary=min(s.log_dictionary for s in every),
        sagas=_combine(shards, lambda s: s.sagas, _saga),
    )


def _combine(
    shards: list[tuple[int, EngineStatus]],
    part: Callable[[EngineStatus], Mapping[str, T]],
    merge: Callable[[list[tuple[int, T]]], T],
) -> dict[str, T]:
    names = sorted({name for _, status in shards for name in part(status)})
    return {
        name: merge([(shard, part(s)[name]) for shard, s in shards if name in part(s)])
        for name in names
    }


def _errors(errors: Iterable[tuple[int, str]]) -> str:
    return "; ".join(f"shard {shard}: {error}" for shard, error in errors if error)


def _worst(states: Iterable[str]) -> Any:
    return max(states, key=lambda state: _SEVERITY.get(state, len(_SEVERITY)))


def _since(times: Iterable[float]) -> float:
    started = [t for t in times if t]
    return min(started) if started else 0.0


def _view(parts: list[tuple[int, ViewStatus]]) -> ViewStatus:
    views = [view for _, view in parts]
    return ViewStatus(
        position=sum(v.position for v in views),
        lag_events=sum(v.lag_events for v in views),
        lag_seconds=max(v.lag_seconds for v in views),
        parked=sum(v.parked for v in views),
        skipped=sum(v.skipped for v in views),
        error=_errors((shard, view.error) for shard, view in parts),
        backend=views[0].backend,
        state=_worst(v.state for v in views),
        attempts=max(v.attempts for v in views),
        failing_since=_since(v.failing_since for v in views),
        retry_delay=max(v.retry_delay for v in views),
        folded=sum(v.folded for v in views),
    )


def _saga(parts: list[tuple[int, SagaStatus]]) -> SagaStatus:
    sagas = [saga for _, saga in parts]
    return SagaStatus(
        position=sum(s.position for s in sagas),
        lag_events=sum(s.lag_events for s in sagas),
        lag_seconds=max(s.lag_seconds for s in sagas),
        state=_worst(s.state for s in sagas),
        error=_errors((shard, saga.error) for shard, saga in parts),
        attempts=max(s.attempts for s in sagas),
        failing_since=_since(s.failing_since for s in sagas),
        retry_delay=max(s.retry_delay for s in sagas),
        issued=sum(s.issued for s in sagas),
        rejected=sum(s.rejected for s in sagas),
    )
