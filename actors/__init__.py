"""Concurrency: the dispatcher actor runtime, aggregates, the log writer, projectors, the router.

The public entry point is :class:`Engine`; the engine's errors are re-exported here too.
"""

from actors._dispatch import Dispatcher, DispatcherActor, DispatcherFuture, freeze_gc
from actors._engine import Engine, EngineStatus
from actors._messages import CommandResult
from actors._progress import ViewStatus
from actors._projection_process import ProjectionStatus
from actors._rebuild import RebuildReport
from actors._saga_spec import Saga, SagaStatus, saga_command_id
from domain.errors import (
    ActorFailed,
    AggregateNotFound,
    CommandRejected,
    CommandTimeout,
    CommitFailed,
    ConcurrencyConflict,
    ConsistencyTimeout,
    CorruptLog,
    EngineClosed,
    EngineError,
    IdempotencyConflict,
    InvalidCommand,
    InvalidQuery,
    InvalidSaga,
    LogLocked,
    MaintenanceFailed,
    ProjectionUnavailable,
    StorageError,
    UnknownView,
)
from store import RecentCommands

__all__ = [
    "ActorFailed",
    "AggregateNotFound",
    "CommandRejected",
    "CommandResult",
    "CommandTimeout",
    "CommitFailed",
    "ConcurrencyConflict",
    "ConsistencyTimeout",
    "CorruptLog",
    "Dispatcher",
    "DispatcherActor",
    "DispatcherFuture",
    "Engine",
    "EngineClosed",
    "EngineError",
    "EngineStatus",
    "IdempotencyConflict",
    "InvalidCommand",
    "InvalidQuery",
    "InvalidSaga",
    "LogLocked",
    "MaintenanceFailed",
    "ProjectionStatus",
    "ProjectionUnavailable",
    "RebuildReport",
    "RecentCommands",
    "Saga",
    "SagaStatus",
    "StorageError",
    "UnknownView",
    "ViewStatus",
    "freeze_gc",
    "saga_command_id",
]
