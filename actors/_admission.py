"""Admission of commands at the engine's door: id checks and the codec of the deciders.

Everything here runs in the caller's thread before a command reaches an actor, so a malformed
command is refused with a typed error and never touches the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from domain.errors import InvalidCommand
from domain.ids import validate_id
from store import Codec

__all__ = ["Routed", "admit", "check_id", "codec_for", "fingerprint"]

_encoder = msgspec.msgpack.Encoder(decimal_format="string")


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
    """Return ``value`` if it is an id of the engine's one grammar (:mod:`domain.ids`).

    Raises:
        InvalidCommand: It is not.
    """
    return validate_id(value, field)


def fingerprint(command: object) -> bytes:
    """Return a stable hash of a command's type and every field (its id included).

    Raises:
        InvalidCommand: The command holds a value that cannot be encoded (an int beyond 64 bits,
            an arbitrary object): such a command can never have been recorded, and letting the
            raw encoder error through failed the caller with a bare OverflowError/TypeError.
    """
    try:
        payload = _encoder.encode(command)
    except (msgspec.EncodeError, OverflowError, TypeError, ValueError) as error:
        raise InvalidCommand(
            "", "unencodable_command", f"the command cannot be encoded: {error}"
        ) from error
    return hashlib.blake2b(
        type(command).__qualname__.encode() + b"\0" + payload, digest_size=16
    ).digest()


class Routed(Protocol):
    """What a command's type is routed to: an aggregate registry (its decider names the id)."""

    @property
    def decider(self) -> Any:
        """The aggregate type's decider."""
        ...


R = TypeVar("R", bound=Routed)


def admit(routes: Mapping[type, R], command: Any) -> tuple[R, str]:
    """Return the registry of ``command``'s type and its aggregate id, checking every id.

    Raises:
        InvalidCommand: Not a command of a registered aggregate type, an id outside the
            grammar, or an ``expected_version`` that is not an int >= 0.
    """
    registry = routes.get(type(command))
    if registry is None:
        raise InvalidCommand(
            "",
            "unknown_command",
            f"{type(command).__name__} is not a command of any registered aggregate type",
        )
    command_id = check_id(getattr(command, "command_id", None), "command_id")
    expected = getattr(command, "expected_version", None)
    if expected is not None and (
        isinstance(expected, bool) or not isinstance(expected, int) or expected < 0
    ):
        raise InvalidCommand(
            command_id, "invalid_expected_version", "expected_version must be an int >= 0"
        )
    try:
        aggregate_id = check_id(registry.decider.aggregate_id(command), "aggregate id")
    except AttributeError as error:
        raise InvalidCommand("", "invalid_type", str(error)) from error
    return registry, aggregate_id
