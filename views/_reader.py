"""Answering queries from another process: :class:`ViewReader`.

Reads scale apart from writes: one process runs the engine (and, with
``Engine.open(path, projection="process")``, a projection process writes the views), while any
number of other processes (HTTP workers, report jobs) open a :class:`ViewReader` on the same data
directory and answer the same query types from the LMDB views environment (``<path>/views``).

- Only views kept in LMDB can be read here: a memory view lives in the engine process's memory.
  Which views are in LMDB follows the same rules as the engine (``view_backends``, then the read
  model's ``default_backend``); a query of another view raises ``UnknownView`` naming the query
  types this reader answers.
- ``query(q, after=position)`` waits until the checkpoint of ``q``'s view reaches ``position``
  (read-your-writes for a caller that got ``position`` from the engine): it polls the checkpoint,
  backing off from 0.5 ms to 20 ms, until its deadline, then raises ``ConsistencyTimeout`` with the
  answer as of now, as the engine does.
- It writes nothing and takes no lock: it never slows the engine down beyond LMDB's reader slots
  (126 per environment, shared by every process), and it may run while the engine is closed.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import lmdb

from domain.errors import ConsistencyTimeout, InvalidView, LogLocked
from store import ReadOnlyEnv
from store._env import ProcessLock
from views._followed import FollowedView
from views._routes import QueryRoutes
from views._view import Backend, ReadModel

__all__ = ["ViewReader"]

VIEWS_DIR = "views"


def lmdb_models(
    items: Sequence[ReadModel], backends: Mapping[str, Backend] | None
) -> list[ReadModel]:
    """Return the read models of ``items`` an engine keeps in LMDB (same rules as the engine)."""
    chosen = dict(backends or {})
    return [
        model
        for model in items
        if chosen.get(model.name, getattr(model, "default_backend", "memory")) == "lmdb"
    ]


class ViewReader:
    """Answers queries from the LMDB views of a data directory, in any process.

    Open it with :meth:`open`; it is also a context manager. Thread-safe: every query runs in
    its own short read transaction.
    """

    def __init__(self, env: ReadOnlyEnv, views: Sequence[FollowedView]) -> None:
        self._env = env
        self.views = {view.name: view for view in views}
        self._routes = QueryRoutes(list(views))

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        views: Sequence[ReadModel] | None = None,
        view_backends: Mapping[str, Backend] | None = None,
    ) -> ViewReader:
        """Open the views of the data directory ``path`` for reading.

        Args:
            path: The engine's data directory (the one given to ``Engine.open``).
            views: The read models the engine keeps (default: the order read models).
            view_backends: The engine's ``view_backends``: which of them live in LMDB.

        Raises:
            LogLocked: An engine on ``path`` is open in this very process (LMDB allows one
                handle per environment and process): use that engine's ``query``.
            InvalidView: ``path`` has no views environment, or it lacks one of the LMDB views
                (open an engine with them first).
        """
        data = pathlib.Path(path)
        if ProcessLock.held_here(data):
            raise LogLocked(str(data), os.getpid())
        if views is None:
            from views.orders import order_read_models  # noqa: PLC0415 - orders import us

            views = order_read_models()
        models = lmdb_models(views, view_backends)
        directory = data / VIEWS_DIR
        if not (directory / "data.mdb").exists():
            raise InvalidView(
                str(directory), "holds no views environment; open an engine on it first"
            )
        try:
            env = ReadOnlyEnv(directory)
        except lmdb.Error as error:
            raise InvalidView(str(directory), f"cannot be read ({error})") from error
        try:
            return cls(env, [FollowedView(model, env) for model in models])
        except BaseException:
            env.close()
            raise

    def positions(self) -> dict[str, int]:
        """Return each view's checkpoint: the last log position it has applied."""
        return {name: view.position() for name, view in self.views.items()}

    def query(self, query: Any, *, after: int | None = None, timeout: float = 5.0) -> Any:
        """Answer ``query``; with ``after``, first wait until its view has applied that position.

        Raises:
            InvalidQuery: The query is malformed, or no LMDB view answers its type
                (``UnknownView``).
            ConsistencyTimeout: The view did not reach ``after`` within ``timeout`` seconds;
                ``.stale_result`` holds the answer as of now.
            EngineClosed: The reader was closed.
        """
        view = self._routes.resolve(query)
        if after is None:
            return view.query(query)
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            reached = view.position()
            if reached >= after:
                return view.query(query)
            if time.monotonic() >= deadline:
                raise ConsistencyTimeout(view.name, after, reached, view.query(query))
            # The writer is another process: its checkpoint is polled, with a deadline.
            threading.Event().wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.02)

    def close(self) -> None:
        """Close the environment. Idempotent."""
        for view in self.views.values():
            view.close()
        self._env.close()

    def __enter__(self) -> Self:
        """Return the reader itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the reader."""
        self.close()
