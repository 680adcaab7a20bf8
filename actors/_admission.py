"""Admission of commands at the engine's door: id checks and the codec of the deciders.

Everything here runs in the caller's thread before a command reaches an actor, so a malformed
command is refused with a typed error and never touches the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.errors import InvalidCommand
from store import Codec

__all__ = ["check_id", "codec_for"]

_MAX_ID = 200


def codec_for(deciders: Sequence[Any], codec: Codec | None) -> Codec:
    """Return ``codec`` (or a new one) with every decider's event types registered."""
    codec = codec if codec is not None else Codec()
    known = codec.known_tags()
    for decider in deciders:
        for event_type in decider.event_types:
            if event_type.__struct_config__.tag not in known:
                codec.register(event_type)
    return codec


def check_id(value: object, field: str) -> str:
    """Return ``value`` if it can be an id (a non-empty UTF-8 string, short, no NUL).

    Raises:
        InvalidCommand: It cannot.
    """
    if not isinstance(value, str) or not value:
        raise InvalidCommand(str(value)[:_MAX_ID], "invalid_type", f"{field} must be a string")
    if len(value) > _MAX_ID or "\x00" in value:
        raise InvalidCommand(
            value[:_MAX_ID], "invalid_id", f"{field} must be <= {_MAX_ID} chars, without NUL"
        )
    try:
        value.encode()
    except UnicodeEncodeError:
        # Lone surrogates: the id could never be stored (keys are UTF-8).
        raise InvalidCommand(
            value.encode(errors="replace").decode()[:_MAX_ID],
            "invalid_id",
            f"{field} is not valid Unicode (it holds a lone surrogate)",
        ) from None
    return value
