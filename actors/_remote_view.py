"""A memory view kept by the projection process, as the engine's process serves it.

In ``projection="process"`` mode the memory views (search, stats) live in the projection
process with the LMDB views, so the engine's process does no view work at all (its GIL is the
write side's). Their rows are that process's objects: a query crosses the pipe and is answered
there (:meth:`~actors._projection_process.ProjectionProcess.query`), and the position is the one
the child last reported, which is also what wakes read-your-writes queries in the router.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.errors import EngineClosed
from views import Backend, ReadModel
from views._read_only import ReadOnlyView
from views._view import check_query

if TYPE_CHECKING:
    from actors._projection_process import ProjectionProcess

__all__ = ["RemoteView"]


class RemoteView(ReadOnlyView):
    """A read model's memory view in the projection process: queried there, read-only here.

    It answers ``query`` and ``position`` (see :class:`~views.View`); every method that would
    write raises ``TypeError``: the projection process owns the view.

    Args:
        model: The read model (the same one the projection process keeps).
        process: The engine's handle on the projection process.
    """

    backend: Backend = "memory"
    skip_unknown = False
    owner = "the projection process"

    def __init__(self, model: ReadModel, process: ProjectionProcess) -> None:
        self.name = model.name
        self.tags = model.tags
        self.query_types = model.query_types
        self._model = model
        self._process = process
        self._closed = False

    def __repr__(self) -> str:
        return f"RemoteView({self.name!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(f"view {self.name!r} is closed")

    def position(self) -> int:
        """Return the position the projection process last reported for the view."""
        self._check_open()
        return self._process.position(self.name)

    def validate(self, query: object) -> None:
        """Raise InvalidQuery if this view does not answer ``query`` or its model refuses it."""
        check_query(self, self._model, query)

    def query(self, query: object) -> object:
        """Answer ``query`` in the projection process (checked here first: no needless trip).

        Raises:
            InvalidQuery: The query is malformed or this view does not answer its type.
            ProjectionUnavailable: The projection process is down or did not answer in time.
        """
        self._check_open()
        check_query(self, self._model, query)
        return self._process.query(self.name, query)

    def close(self) -> None:
        """Stop answering (the projection process keeps the rows). Idempotent."""
        self._closed = True
