"""The engine's one error hierarchy.

Every error the engine raises on purpose derives from :class:`EngineError`. Each class carries the
data a caller needs as attributes (not only in its message), and its message says what to do.
This module is a leaf: it imports nothing from the engine, so every layer can raise these.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorFailed",
    "AggregateNotFound",
    "CommandRejected",
    "CommandTimeout",
    "CommitFailed",
    "ConcurrencyConflict",
    "ConsistencyTimeout",
    "CorruptLog",
    "EngineClosed",
    "EngineError",
    "IdempotencyConflict",
    "InvalidCommand",
    "InvalidQuery",
    "InvalidSaga",
    "InvalidView",
    "LogLocked",
    "MaintenanceFailed",
    "ProjectionUnavailable",
    "ShardCountMismatch",
    "ShardUnavailable",
    "StorageError",
    "UnknownView",
]


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries in crash tests; keyword-only constructors need this so
        # pickling rebuilds them with their data, not just their message.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[EngineError], args: tuple[Any, ...], state: dict[str, Any]) -> EngineError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class CommandRejected(EngineError):
    """A command broke a domain rule; nothing was written.

    Attributes:
        aggregate_id: The aggregate the command was aimed at.
        rule: A short, stable name of the rule that was broken (e.g. ``"order_not_pending"``).
    """

    def __init__(self, aggregate_id: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.aggregate_id = aggregate_id
        self.rule = rule


class InvalidCommand(CommandRejected):
    """A command is malformed (wrong types, absurd values, unknown type); nothing is written."""


class AggregateNotFound(EngineError):
    """The command or query names an aggregate that does not exist.

    Attributes:
        aggregate_id: The id that was not found.
    """

    def __init__(self, aggregate_id: str, stream_type: str = "aggregate") -> None:
        super().__init__(
            f"{stream_type} {aggregate_id!r} does not exist; create it first or check the id"
        )
        self.aggregate_id = aggregate_id
        self.stream_type = stream_type


class ConcurrencyConflict(EngineError):
    """The aggregate's version was not the one the command expected; nothing was written.

    Attributes:
        aggregate_id: The aggregate whose version differed.
        expected: The version the command expected the aggregate to have before it.
        actual: The version the aggregate actually had.
    """

    def __init__(self, aggregate_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{aggregate_id!r} is at version {actual}, but the command expected version "
            f"{expected}; reload the aggregate and retry with expected_version={actual}"
        )
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class IdempotencyConflict(EngineError):
    """A command id was reused for a different command; nothing was written.

    Attributes:
        command_id: The reused id.
    """

    def __init__(self, command_id: str) -> None:
        super().__init__(
            f"command id {command_id!r} was already used for a different command; "
            "use a fresh command_id for a new command"
        )
        self.command_id = command_id


class InvalidQuery(EngineError):
    """A query's parameters are out of range or unknown; no view was touched.

    Attributes:
        field: The offending parameter.
        value: The value it had.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(f"invalid query: {field}={value!r}; allowed: {allowed}")
        self.field = field
        self.value = value
        self.allowed = allowed


class UnknownView(InvalidQuery):
    """A view name (rebuild, parked events) or query type no view serves.

    Attributes:
        known: The names that would have been accepted (view names, or query type names).
    """

    def __init__(self, name: object, known: list[str], *, field: str = "view") -> None:
        super().__init__(field, name, ", ".join(sorted(known)) or "no views registered")
        self.known = known


class InvalidView(EngineError, ValueError):
    """``Engine.open(views=..., view_backends=...)`` was given views it cannot keep.

    Raised at open, before any actor starts: an object that is neither a read model nor a
    view, two views with one name, two views answering one query type, or a backend other than
    ``"memory"`` / ``"lmdb"``. Also a ``ValueError``, as a bad argument is.

    Attributes:
        view: The view's name (or the offending object's repr).
        reason: What is wrong and what to do.
    """

    def __init__(self, view: str, reason: str) -> None:
        super().__init__(f"view {view}: {reason}")
        self.view = view
        self.reason = reason


class InvalidSaga(EngineError, ValueError):
    """``Engine.open(sagas=...)`` was given a saga it cannot run.

    Raised at open, before anything is opened: an object without ``name``, ``tags`` and
    ``react``, a name outside the id grammar (it prefixes every command id the saga issues) or
    longer than 64 characters, or two sagas with one name. Also a ``ValueError``.

    Attributes:
        saga: The saga's name (or the offending object's repr).
        reason: What is wrong and what to do.
    """

    def __init__(self, saga: str, reason: str) -> None:
        super().__init__(f"saga {saga}: {reason}")
        self.saga = saga
        self.reason = reason


class ConsistencyTimeout(EngineError):
    """The view did not reach the requested position in time.

    Attributes:
        view: The view that served the query.
        wanted: The position the caller asked for (``after=``).
        reached: The position the view had applied when the wait gave up.
        stale_result: The query's answer as of ``reached``.
    """

    def __init__(self, view: str, wanted: int, reached: int, stale_result: object) -> None:
        super().__init__(
            f"view {view!r} reached position {reached}, not {wanted}, before the timeout; "
            "the stale answer is in .stale_result, or retry with a longer timeout"
        )
        self.view = view
        self.wanted = wanted
        self.reached = reached
        self.stale_result = stale_result


class LogLocked(EngineError):
    """Another live engine (this process or another) holds the data directory.

    Attributes:
        path: The data directory.
        pid: The process id of the holder.
    """

    def __init__(self, path: str, pid: int) -> None:
        super().__init__(
            f"data directory {path} is in use by process {pid}; stop that process or use "
            "another --data directory"
        )
        self.path = path
        self.pid = pid


class MaintenanceFailed(EngineError):
    """A backup or a compaction could not be done; the data directory was left as it was.

    Attributes:
        operation: ``"backup"`` or ``"compact"``.
        path: The directory concerned (the source, or the backup's destination).
        reason: What went wrong, and what to do about it.
    """

    def __init__(self, operation: str, path: str, reason: str) -> None:
        super().__init__(f"{operation} of {path} not done: {reason}")
        self.operation = operation
        self.path = path
        self.reason = reason


class CorruptLog(EngineError):
    """A stored record cannot be decoded (bad bytes or an unknown event tag).

    Attributes:
        position: Global position of the bad record (0 if it is not a log record).
        reason: What is wrong with it.
    """

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(
            f"corrupt record at position {position}: {reason}; restore the data directory from "
            "a backup, register an upcaster, or let views skip unknown events"
        )
        self.position = position
        self.reason = reason


class CommitFailed(EngineError):
    """The batch holding this command failed to commit; nothing of it was written.

    Attributes:
        reason: Why the commit failed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the commit failed ({reason}); nothing of this command was written, retry it"
        )
        self.reason = reason


class StorageError(EngineError):
    """The store could not be read (or written) for a command; nothing of it was written.

    Attributes:
        operation: What the engine was doing (``"load"``, ``"idempotency lookup"``...).
        reason: The underlying error.
    """

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(
            f"the store failed during {operation} ({reason}); nothing was written, retry the "
            "command (same command_id) once the store is healthy"
        )
        self.operation = operation
        self.reason = reason


class ActorFailed(EngineError):
    """An engine actor failed while it held this request; the request was not carried out.

    Only a failure of the log writer after a commit can leave a command's outcome unknown, and
    the message says so: retry with the same ``command_id`` (it is applied at most once, and the
    retry answers with the original result). A query can simply be asked again.

    Attributes:
        actor: The kind of actor that failed (``"aggregate"``, ``"writer"``, ``"router"``...).
        reason: The underlying error.
    """

    def __init__(self, actor: str, reason: str, *, outcome_unknown: bool = False) -> None:
        retry = (
            "the command may have committed: retry it with the same command_id to learn its "
            "outcome (it is applied at most once)"
            if outcome_unknown
            else "nothing was done; retry"
        )
        super().__init__(f"the {actor} failed while holding this request ({reason}); {retry}")
        self.actor = actor
        self.reason = reason
        self.outcome_unknown = outcome_unknown


class CommandTimeout(EngineError, TimeoutError):
    """A command was not acknowledged in time (or the engine was too busy to accept it).

    The command may still commit later: retry with the same ``command_id`` to learn its outcome
    without applying it twice.

    Attributes:
        command_id: The command's id.
        seconds: The timeout that expired.
    """

    def __init__(self, command_id: str, seconds: float, what: str = "acknowledged") -> None:
        super().__init__(
            f"command {command_id!r} was not {what} within {seconds} s; retry with the same "
            "command_id to get its outcome exactly once"
        )
        self.command_id = command_id
        self.seconds = seconds


class EngineClosed(EngineError):
    """The engine was closed; open a new one to continue."""

    def __init__(self, message: str = "the engine is closed; open a new Engine") -> None:
        super().__init__(message)


class ProjectionUnavailable(EngineError):
    """The projection process (``Engine.open(projection="process")``) could not do what was asked.

    It is down (the engine restarts it by itself, with backoff; ``status().projection`` shows
    it), it did not start, or it did not answer in time. Queries keep being answered meanwhile,
    from the views as the process last left them.

    Attributes:
        reason: What went wrong.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the projection process is unavailable ({reason}); the engine restarts it by "
            "itself: see status().projection, and ask again once it runs"
        )
        self.reason = reason


class ShardUnavailable(EngineError):
    """A shard of a sharded engine did not answer: its process is down, restarting, or too slow.

    A command that got this error may or may not have been committed: re-send it with the same
    ``command_id`` (it is never applied twice) once the shard is back.

    Attributes:
        shard: The shard's index.
        reason: What went wrong (the process died, no answer within the timeout...).
    """

    def __init__(self, shard: int, reason: str) -> None:
        super().__init__(
            f"shard {shard} is unavailable ({reason}); a command sent to it may or may not have "
            "committed: re-send it with the same command_id once the shard is back (Ray restarts "
            "it), or ask the query again"
        )
        self.shard = shard
        self.reason = reason


class ShardCountMismatch(EngineError):
    """A sharded data directory was opened with another shard count than it was created with.

    Attributes:
        recorded: The shard count recorded in the data directory.
        requested: The shard count asked for.
    """

    def __init__(self, path: str, recorded: int, requested: int) -> None:
        super().__init__(
            f"data directory {path} holds {recorded} shards, not {requested}; open it with "
            f"shards={recorded} (an aggregate's shard depends on the count, so it cannot change)"
        )
        self.path = path
        self.recorded = recorded
        self.requested = requested
