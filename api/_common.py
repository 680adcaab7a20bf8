"""What the routes share: settings, header and query parameter types, engine calls, answers."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from fastapi import Header, Query, Request, Response

from actors import CommandResult, Engine
from api._body import MAX_BODY_BYTES, expected_version
from api._errors import MsgspecResponse
from api._schemas import CommandAnswer, ErrorAnswer, json_content
from domain.errors import EngineClosed

__all__ = [
    "ERRORS",
    "After",
    "ApiSettings",
    "IdempotencyKey",
    "IfMatch",
    "answer",
    "ask",
    "body_doc",
    "command_ids",
    "engine_of",
    "run_command",
    "settings_of",
]


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Tunables of the HTTP API.

    Attributes:
        command_timeout: Seconds a command may take before a 503 (it may still commit).
        read_timeout: Seconds a read waits for ``?after=`` before a 503 with the stale answer.
        max_body_bytes: Largest request body accepted (413 beyond).
    """

    command_timeout: float = 10.0
    read_timeout: float = 5.0
    max_body_bytes: int = MAX_BODY_BYTES


After = Annotated[
    int | None,
    Query(ge=0, description="Read your writes: wait until the view has applied this position."),
]
IdempotencyKey = Annotated[
    str | None,
    Header(description="Becomes the command_id: a retry with the same key answers the original."),
]
IfMatch = Annotated[
    str | None, Header(description='The version the order must have (its ETag, e.g. "3").')
]

ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    code: {"description": text, "content": json_content(ErrorAnswer)}
    for code, text in {
        404: "Unknown order",
        409: "Version (If-Match) or Idempotency-Key conflict",
        413: "Body too large",
        422: "Invalid input or a broken rule (the detail says which)",
        503: "Engine closed, busy, or ?after not reached in time (stale answer included)",
    }.items()
}


def engine_of(request: Request) -> Engine:
    """Return the app's engine, or raise ``EngineClosed`` (503) if it is not open."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None or engine.closed:
        raise EngineClosed
    return engine


def settings_of(request: Request) -> ApiSettings:
    """Return the app's settings."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def run_command(request: Request, command: Any) -> CommandResult:
    """Execute ``command`` without blocking the event loop."""
    timeout = settings_of(request).command_timeout
    result: CommandResult = await engine_of(request).execute_async(command, timeout=timeout)
    return result


async def ask(request: Request, query: Any, after: int | None) -> Any:
    """Answer ``query`` (after ``after``, if given) without blocking the event loop."""
    timeout = settings_of(request).read_timeout
    return await engine_of(request).query_async(query, after=after, timeout=timeout)


def answer(result: CommandResult, status_code: int = 200) -> Response:
    """Answer an accepted command: ``{order_id, version, position}`` and the version as ETag."""
    headers = {"ETag": f'"{result.version}"'}
    if status_code == 201:  # noqa: PLR2004 - HTTP status codes read best as numbers
        headers["Location"] = f"/orders/{result.aggregate_id}"
    body = CommandAnswer(result.aggregate_id, result.version, result.position)
    return MsgspecResponse(body, status_code=status_code, headers=headers)


def command_ids(key: str | None, if_match: str | None) -> dict[str, Any]:
    """Map ``Idempotency-Key`` and ``If-Match`` onto ``command_id`` and ``expected_version``."""
    ids: dict[str, Any] = {"expected_version": expected_version(if_match)}
    if key is not None:
        ids["command_id"] = key
    return ids


def body_doc(wire_type: Any) -> dict[str, Any]:
    """Document a required JSON request body of ``wire_type`` (the route reads it itself)."""
    return {"requestBody": {"required": True, "content": json_content(wire_type)}}
