"""Admission of commands at the engine's door: id checks and the codec of the deciders.

Everything here runs in the caller's thread before a command reaches an actor, so a malformed
command is refused with a typed error and never touches the log.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import msgspec

from actors._future import DispatcherFuture
from domain.errors import IdempotencyConflict, InvalidCommand
from domain.ids import validate_id
from store import Codec

__all__ = ["InFlightCommands", "check_id", "codec_for", "fingerprint"]

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


class InFlightCommands:
    """The commands submitted and not settled yet, by command id (engine-wide).

    A duplicate of a command still in flight must get the original's result, not be decided
    again on top of it. Checking at the door, while the original is in flight, needs no memory
    in the aggregates (a per-aggregate memory of recent ids cost ~0.7-2 KiB per live aggregate):
    an entry lives exactly from submit to settle, and once settled the log answers (the
    aggregate looks the id up before deciding).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[bytes, DispatcherFuture[Any]]] = {}

    def __len__(self) -> int:
        """Return how many commands are in flight."""
        return len(self._entries)

    def admit(self, command_id: str, print_: bytes, future: DispatcherFuture[Any]) -> bool:
        """Register ``future`` as the command's; False if the id is already in flight.

        A duplicate's ``future`` is then settled from the original's (same fingerprint) or
        fails with :class:`IdempotencyConflict` (a different command under the same id).
        """
        with self._lock:
            original = self._entries.get(command_id)
            if original is None:
                self._entries[command_id] = (print_, future)
        if original is None:
            future.add_done_callback(lambda done: self._forget(command_id, done))
            return True
        if original[0] != print_:
            error = IdempotencyConflict(command_id)
            future.set_exception((type(error), error, None))
        else:
            original[1].add_done_callback(lambda done: _copy(done, future))
        return False

    def _forget(self, command_id: str, future: DispatcherFuture[Any]) -> None:
        with self._lock:
            entry = self._entries.get(command_id)
            if entry is not None and entry[1] is future:
                del self._entries[command_id]


def _copy(source: DispatcherFuture[Any], target: DispatcherFuture[Any]) -> None:
    # Runs when the original settles: the duplicate gets the very same answer.
    try:
        target.set(source.get(timeout=0))
    except Exception as error:  # noqa: BLE001 - the original's failure is the duplicate's too
        target.set_exception((type(error), error, error.__traceback__))
