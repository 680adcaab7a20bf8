"""Query routing: each query type goes to the one view that declares it in ``query_types``.

The table is built from the views an engine keeps, never from a fixed list, so a user's read
model is asked exactly like the order views. Validation belongs to the query and its read model,
not to a global function: before any view is asked (or any wait for ``after=`` begins), the
query's own ``validate()`` (if it has one) and then the view's ``validate(query)`` (if it has
one; a bound read model's ``validate`` is reached through it) may raise
:class:`~domain.errors.InvalidQuery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.errors import InvalidView, UnknownView
from views._view import View

__all__ = ["QueryRoutes"]


class QueryRoutes:
    """Query type -> the view answering it, and the checks a query passes first.

    Args:
        views: Every view of the engine.

    Raises:
        InvalidView: Two views declare the same query type (a query goes to exactly one view).
    """

    def __init__(self, views: Sequence[View]) -> None:
        self._views: dict[type, View] = {}
        for view in views:
            for query_type in view.query_types:
                other = self._views.get(query_type)
                if other is not None:
                    raise InvalidView(
                        repr(view.name),
                        f"answers {query_type.__name__}, which view {other.name!r} answers "
                        "too; a query type must be answered by exactly one view",
                    )
                self._views[query_type] = view
        self.allowed: tuple[str, ...] = tuple(sorted(t.__name__ for t in self._views))
        """The names of the query types answered, sorted (for error messages)."""

    def __contains__(self, query_type: object) -> bool:
        """Return True if a view answers ``query_type`` exactly."""
        return query_type in self._views

    def view_for(self, query: Any) -> View:
        """Return the view answering ``query`` (by its type, else by its nearest base class).

        Raises:
            UnknownView: No view answers it (an :class:`~domain.errors.InvalidQuery` whose
                ``field`` is ``"query"`` and whose message names every type answered).
        """
        kind = type(query)
        view = self._views.get(kind)
        if view is None:
            for base in kind.__mro__[1:]:
                view = self._views.get(base)
                if view is not None:
                    break
            else:
                raise UnknownView(kind.__name__, list(self.allowed), field="query")
        return view

    def resolve(self, query: Any) -> View:
        """Return the view answering ``query`` once the query and the view found it valid.

        Raises:
            InvalidQuery: No view answers its type, or its parameters are wrong.
        """
        view = self.view_for(query)
        own = getattr(query, "validate", None)
        if callable(own):
            own()
        check = getattr(view, "validate", None)
        if callable(check):
            check(query)
        return view
