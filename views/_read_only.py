"""The writing half of :class:`~views.View`, refused: for views another process keeps.

:class:`~views.FollowedView` (an LMDB view a projection process writes) and the engine's
``RemoteView`` (a memory view a projection process keeps) answer queries here, while every
method that would change the view raises ``TypeError`` naming who owns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from store import RecordedEvent
from views._view import View

__all__ = ["ReadOnlyView"]


class ReadOnlyView:
    """Mixin: ``apply``, ``reapply``, ``new_shadow``, ``adopt`` and ``clear`` raise TypeError.

    Attributes:
        owner: Who keeps the view, for the error message.
    """

    name: str
    owner: ClassVar[str] = "another process"

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
