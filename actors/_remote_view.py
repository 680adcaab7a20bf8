"""A memory view kept by the projection process, as the engine's process serves it.

In ``projection="process"`` mode the memory views (search, stats) live in the projection
process with the LMDB views, so the engine's process does no view work at all (its GIL is the
write side's). Their rows are that process's objects: a query crosses the pipe and is answered
there (:meth:`~actors._projection_process.ProjectionProcess.query`), and the position is the one
the child last reported, which is also what wakes read-your-writes queries in the router.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    owner = "the projection process"

    def __init__(self, model: ReadModel, process: ProjectionProcess) -> None:
        super().__init__(model)
        self._process = process

    def position(self) -> int:
        """Return the position the projection process last reported for the view."""
        self._check_open()
        return self._process.position(self.name)

    def query(self, query: object) -> object:
        """Answer ``query`` in the projection process (checked here first: no needless trip).

        Raises:
            InvalidQuery: The query is malformed or this view does not answer its type.
            ProjectionUnavailable: The projection process is down or did not answer in time.
        """
        self._check_open()
        check_query(self, self._model, query)
        return self._process.query(self.name, query)
