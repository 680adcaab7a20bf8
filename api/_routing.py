"""Routing: a path segment that is a reserved route word never stands for an id.

``/orders/search`` is the search route. Without this, ``DELETE /orders/search`` or
``POST /orders/search/ship`` reached the order routes with ``order_id="search"``: answers about
an id that can never exist (the id grammar reserves the word), where the truth is that no such
route exists (405 with the methods of ``/orders/search``, or 404).
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from domain.ids import RESERVED_IDS

__all__ = ["IdRoute"]


class IdRoute(APIRoute):
    """An API route that does not match when a path parameter is a reserved route word."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match as FastAPI does, except for reserved words in path parameters."""
        match, child = super().matches(scope)
        if match is not Match.NONE:
            parameters: dict[str, Any] = child.get("path_params", {})
            if any(value in RESERVED_IDS for value in parameters.values()):
                return Match.NONE, {}
        return match, child
