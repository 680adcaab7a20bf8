"""Reading request bodies safely: a capped size and typed decoding (and the id a key derives).

``Idempotency-Key`` also derives the id of an order created without one (``POST /orders``), so a
retried create is the very same command and answers the original result.
"""

from __future__ import annotations

import uuid
from typing import Final, TypeVar

import msgspec
from fastapi import Request
from starlette.exceptions import HTTPException

__all__ = [
    "MAX_BODY_BYTES",
    "BodyTooLarge",
    "InvalidBody",
    "decode_body",
    "order_id_for_key",
    "read_body",
]

T = TypeVar("T")

MAX_BODY_BYTES: Final = 1 << 20
"""Largest request body accepted (1 MiB); a real order is a few KiB."""

# A client that sends a body slightly over the cap still gets to read its 413: we drain up to this
# much before answering (closing a socket with unread data makes the client see a reset instead).
_DRAIN_BYTES: Final = 4 * MAX_BODY_BYTES

ORDER_ID_NAMESPACE: Final = uuid.UUID("6f1c1a52-61a4-4f61-9d0e-4a7f5d2f8c1e")
"""Namespace of the order ids derived from ``Idempotency-Key`` (uuid5)."""


class InvalidBody(HTTPException):
    """The body is not JSON, or not the expected shape (answered with 422)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=422, detail=detail)


class BodyTooLarge(HTTPException):
    """The body exceeds :data:`MAX_BODY_BYTES` (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413, detail=f"the request body exceeds the limit of {limit} bytes"
        )


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the request body, refusing more than ``limit`` bytes.

    Raises:
        BodyTooLarge: The declared or the actual body is larger than ``limit``.
        InvalidBody: ``Content-Length`` is not a number.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise InvalidBody("the Content-Length header must be a non-negative integer")
        if int(declared) > _DRAIN_BYTES:
            raise BodyTooLarge(limit)
    body = bytearray()
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            body += chunk
        elif size > _DRAIN_BYTES:
            break
    if size > limit:
        raise BodyTooLarge(limit)
    return bytes(body)


def decode_body(raw: bytes, body_type: type[T]) -> T:
    """Decode a JSON body into ``body_type``.

    Raises:
        InvalidBody: Not JSON, or a field is missing, unknown or of the wrong type; the message
            names the field (e.g. ``Expected `int`, got `str` - at `$.items[0].quantity` ``).
    """
    if not raw.strip():
        raise InvalidBody("a JSON body is required")
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as error:
        raise InvalidBody(f"invalid body: {error}") from None
    except msgspec.DecodeError as error:
        raise InvalidBody(f"the body is not valid JSON: {error}") from None


def order_id_for_key(key: str) -> str:
    """Derive a new order's id from an ``Idempotency-Key``: the same key gives the same id."""
    return str(uuid.uuid5(ORDER_ID_NAMESPACE, key))
