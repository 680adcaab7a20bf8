"""What the routes share: settings, engine calls, and the answer to an accepted command."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request, Response
from starlette.exceptions import HTTPException

from actors import CommandResult, Engine
from api._body import MAX_BODY_BYTES
from api._errors import MsgspecResponse
from api._params import command_id_of, expected_version_of
from api._schemas import CommandAnswer
from domain.errors import EngineClosed

__all__ = [
    "AfterBeyondHead",
    "ApiSettings",
    "answer",
    "ask",
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


class AfterBeyondHead(HTTPException):
    """``?after=`` names a position the log has not reached (answered with 409).

    Every position a command answers is at or below the head by then, so waiting could only be
    for a write nobody has made yet: the read is refused at once instead of timing out.
    """

    def __init__(self, after: int, head: int) -> None:
        super().__init__(
            status_code=409,
            detail=(
                f"?after={after} is beyond the log's head ({head}): pass a position that a "
                "command answered"
            ),
        )


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
    """Answer ``query`` (after ``after``, if given) without blocking the event loop.

    Raises:
        AfterBeyondHead: ``after`` is beyond the log's head.
    """
    engine = engine_of(request)
    if after is not None and after > (head := engine.store.head()):
        raise AfterBeyondHead(after, head)
    timeout = settings_of(request).read_timeout
    return await engine.query_async(query, after=after, timeout=timeout)


def answer(result: CommandResult, status_code: int = 200) -> Response:
    """Answer an accepted command: ``{order_id, version, position}`` and the version as ETag."""
    headers = {"ETag": f'"{result.version}"'}
    if status_code == 201:  # noqa: PLR2004 - HTTP status codes read best as numbers
        headers["Location"] = f"/orders/{result.aggregate_id}"
    body = CommandAnswer(result.aggregate_id, result.version, result.position)
    return MsgspecResponse(body, status_code=status_code, headers=headers)


def command_ids(key: str | None, if_match: str | None, order_id: str) -> dict[str, Any]:
    """Map ``Idempotency-Key`` and ``If-Match`` onto ``command_id`` and ``expected_version``.

    Raises:
        InvalidCommand: A header is not of its published form.
    """
    ids: dict[str, Any] = {"expected_version": expected_version_of(if_match, order_id)}
    command_id = command_id_of(key, order_id)
    if command_id is not None:
        ids["command_id"] = command_id
    return ids
