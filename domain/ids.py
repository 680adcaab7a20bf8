"""The one id grammar of the engine: order, customer, product and command ids, at every door.

An id is 1 to 128 characters: ASCII letters, digits, ``.``, ``_``, ``~`` and ``-`` (RFC 3986's
*unreserved* characters), starting with a letter or a digit, and not a reserved route word
(``search``). Why each rule:

- Unreserved characters only: an id is a URL path segment as is (``/orders/{id}``), never
  percent-encoded, never split by a ``/``; it is also one token in a log line, a shell argument
  and an LMDB key (ASCII, so its length in bytes is its length in characters).
- A letter or digit first: ``.`` and ``..`` are path segments that clients and proxies rewrite,
  and an id starting with ``-`` reads as an option on a command line.
- At most 128 characters: a uuid is 36; a longer id is a bug or an attack, and it bloats every
  index key and log line.
- ``search`` is reserved: ``GET /orders/search`` is the search route, so an order with that id
  could never be read.

This module is pure (no I/O) and a leaf, so the Python API, the domain, the read side, the CLI
and the HTTP API all check ids with the same code, and the HTTP schema publishes the same
:data:`ID_PATTERN`.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from typing import Final

from domain.errors import InvalidCommand

__all__ = [
    "ID_CHARACTERS",
    "ID_GRAMMAR",
    "ID_PATTERN",
    "MAX_ID_LENGTH",
    "RESERVED_IDS",
    "id_problem",
    "new_id",
    "validate_id",
]

MAX_ID_LENGTH: Final = 128
"""Longest id, in characters (ASCII, so also in bytes)."""

RESERVED_IDS: Final = frozenset({"search"})
"""Words that are routes of the HTTP API where an id could stand (``/orders/search``)."""

ID_CHARACTERS: Final = "A-Z a-z 0-9 . _ ~ -"
"""The characters an id may hold, as shown in messages."""

ID_PATTERN: Final = r"^(?!search$)[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$"
"""The grammar as one regular expression, valid in both Python and ECMA-262 (JSON Schema).

It is published in the OpenAPI document. Python checks it with ``fullmatch`` (where ``$`` alone
would also accept a trailing newline).
"""

ID_GRAMMAR: Final = (
    f"1-{MAX_ID_LENGTH} characters from {ID_CHARACTERS}, starting with a letter or digit, "
    f"not {' or '.join(sorted(RESERVED_IDS))}"
)
"""The grammar in words, for error messages and documentation."""

_ID: Final = re.compile(ID_PATTERN)
_ALLOWED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")

# Rule names of InvalidCommand (stable: callers may branch on them).
_NOT_A_STRING: Final = "invalid_type"
_EMPTY: Final = "empty_id"
_TOO_LONG: Final = "too_long"
_BAD_CHARACTER: Final = "invalid_id"
_RESERVED: Final = "reserved_id"


def _is_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _problem(value: object, field: str) -> tuple[str, str]:
    """Return ``(rule, message)`` for a ``value`` that is not an id."""
    if not isinstance(value, str):
        return _NOT_A_STRING, f"{field} must be a string, got {type(value).__name__}"
    if not value:
        return _EMPTY, f"{field} must not be empty (an id is {ID_GRAMMAR})"
    if len(value) > MAX_ID_LENGTH:
        return (
            _TOO_LONG,
            f"{field} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}",
        )
    if value in RESERVED_IDS:
        return _RESERVED, f"{field} {value!r} is reserved (a route of the HTTP API); use another id"
    bad = next((char for char in value if char not in _ALLOWED), None)
    if bad is not None:
        # repr(): a lone surrogate or a control character is shown escaped, never raw.
        return _BAD_CHARACTER, f"{field} may not hold {bad!r}; an id is {ID_GRAMMAR}"
    return _BAD_CHARACTER, f"{field} must start with a letter or digit; an id is {ID_GRAMMAR}"


def id_problem(value: object, field: str = "id") -> str | None:
    """Return why ``value`` is not an id (one sentence naming ``field``), or None if it is one.

    For callers that raise their own error type (a query answers ``InvalidQuery``).
    """
    return None if _is_id(value) else _problem(value, field)[1]


def validate_id(value: object, field: str, *, aggregate_id: str | None = None) -> str:
    """Return ``value`` if it is an id (see the module docstring for the grammar).

    Args:
        value: The candidate id.
        field: Its name, for the message (``"order_id"``, ``"Idempotency-Key"``...).
        aggregate_id: The aggregate the command is aimed at, for the error's ``aggregate_id``;
            by default the (shortened, printable) value itself.

    Raises:
        InvalidCommand: It is not an id. ``rule`` is ``invalid_type`` (not a string),
            ``empty_id``, ``too_long``, ``invalid_id`` (a character outside the grammar, or a
            bad first character) or ``reserved_id``; the message names ``field`` and the rule.
    """
    if isinstance(value, str) and _ID.fullmatch(value):
        return value
    rule, message = _problem(value, field)
    if aggregate_id is None:
        aggregate_id = _printable(value)
    raise InvalidCommand(aggregate_id, rule, message)


def _printable(value: object) -> str:
    # The error keeps the offending value, shortened and encodable (a lone surrogate would make
    # the error itself unprintable in a UTF-8 log).
    if not isinstance(value, str):
        return ""
    return value[:MAX_ID_LENGTH].encode(errors="replace").decode()


def new_id() -> str:
    """Return a fresh, time-ordered UUID (version 7, RFC 9562) as a string: the default id.

    Ids made later sort later (to about 250 ns, within one process; across processes, to the
    clock's accuracy): the idempotency table and the stream index are B-trees keyed by these
    ids, and random (version 4) keys dirtied a random page per command there, half-filling them.
    Time-ordered keys append instead. 62 random bits still make a collision negligible.
    """
    now = time.time_ns()
    millis, fraction = divmod(now, 1_000_000)
    sub_millis = fraction * 4096 // 1_000_000  # 12 bits of sub-millisecond time (method 3)
    random_bits = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (
        (millis & ((1 << 48) - 1)) << 80
        | 0x7 << 76  # version 7
        | sub_millis << 64
        | 0b10 << 62  # the RFC 9562 variant
        | random_bits
    )
    return str(uuid.UUID(int=value))
