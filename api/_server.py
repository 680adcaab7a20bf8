"""Serving the app with uvicorn so that even requests refused before the app get the JSON shape.

A request that is not valid HTTP/1.1 (``Content-Length: abc``, a malformed header or request
line) is refused by uvicorn's HTTP parser before any ASGI app runs, with a plain-text 400. The
protocol below answers the same 400 with ``{"detail", "error": "BadRequest"}``. It overrides
``send_400_response`` of uvicorn's h11 protocol (not a documented hook, so
``tests/api/test_server.py`` checks it on every run); ``http=`` taking a protocol class is
documented.
"""

from __future__ import annotations

from typing import Any

import h11
import msgspec
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from api._schemas import ErrorAnswer

__all__ = ["JsonErrorsH11Protocol", "uvicorn_config"]


class JsonErrorsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering unparseable requests with the API's JSON error shape."""

    def send_400_response(self, msg: str) -> None:
        """Answer 400 with a JSON body and close the connection (as uvicorn does)."""
        body = msgspec.json.encode(
            ErrorAnswer(
                detail=(
                    f"{msg} The request is not valid HTTP/1.1: check the request line, the "
                    "headers and Content-Length (a non-negative integer)."
                ),
                error="BadRequest",
            )
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def uvicorn_config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """Return a uvicorn configuration serving ``app`` with :class:`JsonErrorsH11Protocol`.

    Args:
        app: The app (see :func:`api.create_app`).
        **options: Any other ``uvicorn.Config`` option (``log_level``, ``log_config``...).
    """
    return uvicorn.Config(app, http=JsonErrorsH11Protocol, **options)
