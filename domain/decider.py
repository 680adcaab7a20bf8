"""The `Decider` protocol: how a pure aggregate plugs into the generic engine.

The engine's actor runtime knows nothing about orders; it is given Deciders. A Decider is the
write model of one aggregate type as three pure functions over plain data (Akka's
``EventSourcedBehavior`` and Commanded's aggregates are the models):

* ``initial()`` is the state of an aggregate that has no events yet,
* ``decide(state, command, now)`` validates a command against the state and returns the events it
  causes (or raises an :class:`~domain.errors.EngineError`), and
* ``evolve(state, event)`` folds one event into the state.

Time is an argument (``now``), never read inside: replaying the same events gives the same state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar, runtime_checkable

import msgspec

__all__ = ["Command", "Decider"]

CommandT_contra = TypeVar("CommandT_contra", contravariant=True)
EventT = TypeVar("EventT", bound=msgspec.Struct)
StateT = TypeVar("StateT")


@runtime_checkable
class Command(Protocol):
    """What the engine needs of every command: an id (idempotency) and an optional version check.

    ``expected_version`` is the version the aggregate must have *before* the command; ``0`` means
    it must not exist yet, ``None`` skips the check.
    """

    @property
    def command_id(self) -> str:
        """Unique id of this command; the same id again returns the original result."""
        ...

    @property
    def expected_version(self) -> int | None:
        """Version the aggregate must have before the command, or None for no check."""
        ...


class Decider(Protocol[CommandT_contra, EventT, StateT]):
    """The pure write model of one aggregate type.

    Attributes:
        stream_type: Name of the aggregate type, stored with every event (e.g. ``"order"``).
        command_types: The command classes this decider handles (the engine routes by type).
        event_types: The event classes it emits: msgspec Structs with explicit, stable tags.
        state_type: The state class; must be msgspec-encodable (snapshots).
        state_schema_version: Bump when the state's shape changes; older snapshots are ignored.
    """

    stream_type: str
    command_types: tuple[type, ...]
    event_types: tuple[type[EventT], ...]
    state_type: type[StateT]
    state_schema_version: int

    def initial(self) -> StateT:
        """Return the state of an aggregate with no events."""
        ...

    def aggregate_id(self, command: CommandT_contra) -> str:
        """Return the id of the aggregate the command is aimed at."""
        ...

    def decide(self, state: StateT, command: CommandT_contra, now: datetime) -> Sequence[EventT]:
        """Validate ``command`` against ``state`` and return the events it causes.

        Raises:
            EngineError: A subclass saying which rule the command broke; nothing is written.
        """
        ...

    def evolve(self, state: StateT, event: EventT) -> StateT:
        """Return the state after ``event``; must not mutate ``state``."""
        ...
