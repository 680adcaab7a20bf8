"""A view another process keeps, as this one serves it: bound to its model, writes refused.

:class:`~views.FollowedView` (an LMDB view a projection process writes) and the engine's
``RemoteView`` (a memory view a projection process keeps) answer queries here, while every
method that would change the view raises ``TypeError`` naming who owns it. This base holds what
both need besides their ``position`` and ``query``: the model's name, tags and query types, the
query check, and closing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from domain.errors import EngineClosed
from store import RecordedEvent
from views._view import Backend, ReadModel, View, check_query

__all__ = ["ReadOnlyView"]


class ReadOnlyView(ABC):
    """Base: ``apply``, ``reapply``, ``new_shadow``, ``adopt`` and ``clear`` raise TypeError.

    Args:
        model: The read model (the same one the owning process applies).

    Attributes:
        owner: Who keeps the view, for the error message.
    """

    owner: ClassVar[str] = "another process"
    backend: Backend
    skip_unknown = False

    def __init__(self, model: ReadModel) -> None:
        self.name = model.name
        self.tags = model.tags
        self.query_types = model.query_types
        self._model = model
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(f"view {self.name!r} is closed")

    @abstractmethod
    def position(self) -> int:
        """Return the view's position as the owner committed or reported it."""

    @abstractmethod
    def query(self, query: object) -> object:
        """Answer ``query`` from the owner's rows."""

    def validate(self, query: object) -> None:
        """Raise InvalidQuery if this view does not answer ``query`` or its model refuses it."""
        check_query(self, self._model, query)

    def close(self) -> None:
        """Stop answering (the owner keeps the rows). Idempotent."""
        self._closed = True

    def _read_only(self, what: str) -> TypeError:
        return TypeError(f"view {self.name!r} is kept by {self.owner}; cannot {what} here")

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Refuse: the owner applies events."""
        del events, up_to
        raise self._read_only("apply events")

    def reapply(self, event: RecordedEvent) -> None:
        """Refuse: the owner retries parked events."""
        del event
        raise self._read_only("reapply an event")

    def new_shadow(self) -> View:
        """Refuse: the owner rebuilds."""
        raise self._read_only("make a shadow")

    def adopt(self, shadow: View) -> None:
        """Refuse: the owner swaps rebuilt copies in."""
        del shadow
        raise self._read_only("adopt a shadow")

    def clear(self) -> None:
        """Refuse: the owner clears the view."""
        raise self._read_only("clear it")
