"""What the routes share: settings, engine calls, and the answer to an accepted command."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request, Response

from actors import CommandResult
from api._body import MAX_BODY_BYTES
from api._errors import MsgspecResponse
from api._params import command_id_of, expected_version_of
from api._schemas import CommandAnswer
from api._seam import AfterBeyondHead, Reads, ServedEngine, reads_for
from domain.errors import EngineClosed

__all__ = [
    "AfterBeyondHead",
    "ApiSettings",
    "answer",
    "ask",
    "command_ids",
    "engine_of",
    "reads_of",
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


def engine_of(request: Request) -> ServedEngine:
    """Return the app's engine, or raise ``EngineClosed`` (503) if it is not open."""
    engine: ServedEngine | None = getattr(request.app.state, "engine", None)
    if engine is None or engine.closed:
        raise EngineClosed
    return engine


def reads_of(request: Request) -> Reads:
    """Return the read positions of the app's engine (see ``api._seam``)."""
    return reads_for(engine_of(request))


def settings_of(request: Request) -> ApiSettings:
    """Return the app's settings."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def run_command(request: Request, command: Any) -> CommandResult:
    """Execute ``command`` without blocking the event loop."""
    timeout = settings_of(request).command_timeout
    result: CommandResult = await engine_of(request).execute_async(command, timeout=timeout)
    return result


async def ask(request: Request, query: Any, after: int | None, known: int | None = None) -> Any:
    """Answer ``query`` once ``after`` (and ``known``) are applied, never blocking the loop.

    Args:
        request: The request (its app's engine and settings).
        query: The query.
        after: The client's ``?after=`` read position.
        known: A read position the server read itself (an order's last event).

    Raises:
        AfterBeyondHead: ``after`` is beyond its log's head.
    """
    timeout = settings_of(request).read_timeout
    engine = engine_of(request)
    wanted = await reads_for(engine).after(after, timeout, known=known)
    return await engine.query_async(query, after=wanted, timeout=timeout)


def answer(request: Request, result: CommandResult, status_code: int = 200) -> Response:
    """Answer an accepted command: ``{order_id, version, position}`` and the version as ETag.

    ``position`` is the command's read position (see ``api._seam``): pass it as ``?after=``.
    """
    headers = {"ETag": f'"{result.version}"'}
    if status_code == 201:  # noqa: PLR2004 - HTTP status codes read best as numbers
        headers["Location"] = f"/orders/{result.aggregate_id}"
    position = reads_of(request).position(result)
    body = CommandAnswer(result.aggregate_id, result.version, position)
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
