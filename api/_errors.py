"""How engine errors and bad input become HTTP answers: one table, one JSON body shape.

Every error answer is ``{"detail": ..., "error": ...}`` (a read's timeout adds ``stale`` and
``result``). 422 means the input is wrong whatever the state (it breaks the published schema:
``InvalidCommand``, ``InvalidQuery``, a bad body or parameter); 409 means it is well-formed but
conflicts with the current state (a rule of the order such as shipping a shipped order:
exactly ``CommandRejected``; a stale version; a reused Idempotency-Key). Bad input is never a 500.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from api._schemas import ErrorAnswer, StaleAnswer
from domain.errors import (
    ActorFailed,
    AggregateNotFound,
    CommandRejected,
    CommandTimeout,
    CommitFailed,
    ConcurrencyConflict,
    ConsistencyTimeout,
    CorruptLog,
    EngineClosed,
    EngineError,
    IdempotencyConflict,
    InvalidCommand,
    InvalidQuery,
)

__all__ = ["STATUS_BY_ERROR", "MsgspecResponse", "install_error_handlers", "status_for"]

STATUS_BY_ERROR: Final[dict[type[EngineError], int]] = {
    AggregateNotFound: 404,
    ConcurrencyConflict: 409,
    IdempotencyConflict: 409,
    CommandRejected: 409,  # a rule of the aggregate refused it in its current state
    InvalidCommand: 422,  # derives from CommandRejected: wrong whatever the state
    InvalidQuery: 422,  # UnknownView derives from it
    ConsistencyTimeout: 503,
    EngineClosed: 503,
    CommandTimeout: 503,  # the command may still commit: retry with the same Idempotency-Key
    CommitFailed: 503,  # nothing was written: a retry is safe
    ActorFailed: 503,  # an actor failed holding it: retry (same Idempotency-Key for commands)
    CorruptLog: 500,  # the server's data is damaged; nothing the client can fix
}
"""HTTP status per engine error class (the most specific class in the MRO wins)."""

_RETRY_LATER: Final = frozenset({503})


class MsgspecResponse(JSONResponse):
    """A JSON response encoded by msgspec: Structs, Decimals and datetimes need no conversion.

    A JSONResponse subclass, so FastAPI documents a route's answer with the schema the route
    declares; any other response class made it prepend ``"type": "string"`` to that schema.
    """

    def render(self, content: Any) -> bytes:
        """Encode ``content`` as JSON."""
        return msgspec.json.encode(content)


def status_for(error: EngineError) -> int:
    """Return the HTTP status of an engine error (503 for kinds not in the table)."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 503


def _engine_error(error: EngineError) -> Response:
    status = status_for(error)
    if isinstance(error, ConsistencyTimeout):
        body: ErrorAnswer | StaleAnswer = StaleAnswer(
            detail=str(error), error="ConsistencyTimeout", stale=True, result=error.stale_result
        )
    else:
        body = ErrorAnswer(detail=str(error), error=type(error).__name__)
    headers = {"Retry-After": "1"} if status in _RETRY_LATER else None
    return MsgspecResponse(body, status_code=status, headers=headers)


def _where(location: tuple[Any, ...] | list[Any]) -> str:
    kind, *path = location
    name = ".".join(str(part) for part in path) or "(whole)"
    return f"{kind} parameter {name!r}" if kind in {"query", "path", "header"} else f"{kind} {name}"


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = _where(tuple(problem.get("loc", ("request",))))
        given = problem.get("input")
        shown = f" (got {given!r:.60})" if isinstance(given, str | int | float) else ""
        parts.append(f"{where}: {problem.get('msg', 'invalid')}{shown}")
    return "; ".join(parts) or "invalid request"


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path (Starlette names only the first)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Answer engine errors, HTTP errors and parameter validation errors with one body shape."""

    async def on_engine_error(_request: Request, error: Exception) -> Response:
        if not isinstance(error, EngineError):  # pragma: no cover - registered for EngineError
            raise error
        return _engine_error(error)

    async def on_validation_error(_request: Request, error: Exception) -> Response:
        if not isinstance(error, RequestValidationError):  # pragma: no cover - as above
            raise error
        body = ErrorAnswer(detail=_validation_message(error), error="ValidationError")
        return MsgspecResponse(body, status_code=422)

    async def on_http_error(request: Request, error: Exception) -> Response:
        if not isinstance(error, HTTPException):  # pragma: no cover - as above
            raise error
        headers = dict(error.headers or {})
        if error.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            headers["Allow"] = _allowed_methods(request)
        # Our own subclasses (InvalidBody, BodyTooLarge...) name themselves; Starlette's 404/405
        # are named after their status (NotFound, MethodNotAllowed).
        if type(error) is HTTPException:
            name = HTTPStatus(error.status_code).phrase.title().replace(" ", "")
        else:
            name = type(error).__name__
        body = ErrorAnswer(detail=str(error.detail), error=name)
        return MsgspecResponse(body, status_code=error.status_code, headers=headers)

    app.add_exception_handler(EngineError, on_engine_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
