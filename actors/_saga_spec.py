"""What a saga (process manager) is: its shape, its derived command ids and its status.

A saga reacts to committed events with commands: "stock reserved -> confirm the order",
"reservation failed -> cancel it". The user writes it as plain data plus one pure function
(:class:`Saga`); the engine runs it (:mod:`actors._saga`): it feeds it the log from its
checkpoint, submits the commands it returns, and moves the checkpoint once every one of them is
answered.

Exactly-once effect without a distributed transaction: every command a saga issues gets an id
derived from the saga's name, the triggering event's position and the command's index in the
reaction (:func:`saga_command_id`). Re-reacting to an event (after a crash between the commands'
commit and the checkpoint's, or after a transient failure) re-submits the same ids, and the
engine's idempotency answers them with their original results: nothing is applied twice.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol, runtime_checkable

import msgspec

from domain.errors import InvalidSaga
from domain.ids import id_problem
from store import RecordedEvent

__all__ = [
    "MAX_SAGA_NAME",
    "Saga",
    "SagaState",
    "SagaStatus",
    "check_sagas",
    "checkpoint_key",
    "saga_command_id",
    "with_command_id",
]

MAX_SAGA_NAME: Final = 64
"""Longest saga name: its derived command ids (name, position, index) stay within 128."""

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_~-]*")  # the id grammar without "."

SagaState = Literal["ok", "retrying"]
"""``"ok"``, or ``"retrying"``: an event's commands met a transient failure (or ``react``
raised) and the saga tries that event again after a capped backoff."""


@runtime_checkable
class Saga(Protocol):
    """A process manager: reacts to committed events with commands.

    Attributes:
        name: Its stable name: the key of its checkpoint and the prefix of every command id it
            issues. Letters, digits, ``_``, ``~`` and ``-``, at most 64 characters. Renaming a
            saga starts it again from the beginning of the log.
        tags: The event tags it reacts to (None: every event). Other events only move its
            checkpoint.
    """

    name: str
    tags: frozenset[str] | None

    def react(self, record: RecordedEvent) -> Sequence[Any]:
        """Return the commands to issue for one committed event (often none).

        Pure: the same record must always give the same commands, in the same order, as the
        engine may call it again for the same event (after a restart or a failure). Whatever
        ``command_id`` the commands carry is replaced by the derived one.
        """
        ...


class SagaStatus(msgspec.Struct, frozen=True):
    """One saga's progress and health, as ``Engine.status().sagas[name]`` shows it.

    Attributes:
        position: Last position whose reaction is complete (every command answered).
        lag_events: Events committed past ``position``.
        lag_seconds: How long the saga has been behind (0 when caught up).
        state: ``"ok"`` or ``"retrying"`` (see :data:`SagaState`).
        error: The last failed attempt's error, ``"<class>: <message>"``, or ``""``.
        attempts: Failed attempts in the current failure episode.
        failing_since: Unix time the episode began (0 when ok).
        retry_delay: Seconds between the last failure and the next attempt.
        issued: Commands accepted since the engine opened (a retried id counts again).
        rejected: Commands answered with a rule's rejection since the engine opened (logged
            ``saga_command_rejected``; the saga moves on).
    """

    position: int
    lag_events: int
    lag_seconds: float
    state: SagaState = "ok"
    error: str = ""
    attempts: int = 0
    failing_since: float = 0.0
    retry_delay: float = 0.0
    issued: int = 0
    rejected: int = 0


def saga_command_id(saga: str, position: int, index: int) -> str:
    """Return the id of the ``index``-th command ``saga`` issues for the event at ``position``.

    ``<saga>.<position>.<index>``: a saga name holds no ``.``, so two (saga, position, index)
    triples never share an id, and the id stays within the engine's id grammar.
    """
    return f"{saga}.{position}.{index}"


def checkpoint_key(saga: str) -> str:
    """Return the key of ``saga``'s checkpoint in the log's checkpoint table."""
    return f"saga:{saga}"


def with_command_id(command: Any, command_id: str) -> Any:
    """Return a copy of ``command`` (a msgspec Struct or a dataclass) with ``command_id``.

    Raises:
        TypeError: The command is neither (it cannot be copied with a new id).
    """
    if isinstance(command, msgspec.Struct):
        return msgspec.structs.replace(command, command_id=command_id)
    if dataclasses.is_dataclass(command) and not isinstance(command, type):
        return dataclasses.replace(command, command_id=command_id)
    raise TypeError(
        f"a saga returned a {type(command).__name__}: commands must be msgspec Structs or "
        "dataclasses with a command_id field"
    )


def check_sagas(sagas: Sequence[object]) -> list[Saga]:
    """Return ``sagas`` checked: the right shape, valid and distinct names.

    Raises:
        InvalidSaga: One of them cannot be run; the message says why and what to do.
    """
    seen: set[str] = set()
    checked: list[Saga] = []
    for saga in sagas:
        if not isinstance(saga, Saga):
            raise InvalidSaga(
                repr(saga), "a saga needs `name`, `tags` and `react(record) -> commands`"
            )
        name = saga.name
        problem = id_problem(name, "saga name")
        if problem is None and not _NAME.fullmatch(name):
            problem = "the saga name may not hold '.': it separates the parts of the command ids"
        if problem is None and len(name) > MAX_SAGA_NAME:
            problem = f"the saga name is longer than {MAX_SAGA_NAME} characters; shorten it"
        if problem is not None:
            raise InvalidSaga(repr(name), problem)
        if name in seen:
            raise InvalidSaga(repr(name), "two sagas have this name; give each its own")
        tags = saga.tags
        if tags is not None and not isinstance(tags, frozenset):
            raise InvalidSaga(repr(name), "`tags` must be a frozenset of event tags, or None")
        seen.add(name)
        checked.append(saga)
    return checked
