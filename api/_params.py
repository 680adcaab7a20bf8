"""The routes' parameters (path, query, header): their published rules and their checks.

FastAPI validates types, enums and integer bounds itself (422 ``ValidationError``). Ids, the
``If-Match`` form and money bounds are patterns that its regex engine
cannot run alike (no look-ahead; another ``$``): they are published here
(``json_schema_extra``) and checked by the functions below with Python's ``fullmatch``, so the
answer names the field and the rule.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from fastapi import Header, Path, Query

from api._schemas import AMOUNT_PATTERN
from domain.errors import InvalidCommand, InvalidQuery
from domain.ids import ID_GRAMMAR, ID_PATTERN, MAX_ID_LENGTH, id_problem, validate_id
from views._order_types import MAX_PAGE_SIZE

__all__ = [
    "IF_MATCH_PATTERN",
    "MAX_PAGE",
    "After",
    "CustomerId",
    "IdempotencyKey",
    "IfMatch",
    "MaxTotal",
    "MinTotal",
    "OrderId",
    "PageNumber",
    "PageSize",
    "ProductId",
    "SearchText",
    "SortBy",
    "SortOrder",
    "StatusFilter",
    "command_id_of",
    "expected_version_of",
    "read_id",
]

MAX_PAGE: Final = 1_000_000
"""Largest page number (a billion rows at the largest page size: beyond any real listing)."""

IF_MATCH_PATTERN: Final = r'^(?:(?:W/)?"[0-9]{1,18}"|[0-9]{1,18})$'
"""``If-Match``: a version as the ETag sends it (``"3"``, weak ``W/"3"``) or bare (``3``)."""

_IF_MATCH: Final = re.compile(IF_MATCH_PATTERN)
_ID_DOC: Final = f"An id: {ID_GRAMMAR}."


OrderId = Annotated[
    str,
    Path(
        description=f"The order's id. {_ID_DOC}",
        json_schema_extra={"pattern": ID_PATTERN, "examples": ["order-1"]},
    ),
]
ProductId = Annotated[
    str,
    Path(
        description=f"The product's id. {_ID_DOC}",
        json_schema_extra={"pattern": ID_PATTERN, "examples": ["kettle"]},
    ),
]
CustomerId = Annotated[
    str,
    Path(
        description=f"The customer's id. {_ID_DOC}",
        json_schema_extra={"pattern": ID_PATTERN, "examples": ["customer-7"]},
    ),
]

After = Annotated[
    int | None,
    Query(
        ge=0,
        description=(
            "Read your writes: answer once the view has applied this position (a position a "
            "command answered). Beyond the log's head: 409; not reached in time: 503 with the "
            "answer as of now. On a sharded server a position names its shard "
            "(position * shards + shard) and waits for that shard only."
        ),
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        description=(
            "Becomes the command's command_id: a retry with the same key answers the original, "
            f"a different command under it is a 409. {_ID_DOC}"
        ),
        json_schema_extra={"pattern": ID_PATTERN, "examples": ["checkout-7f3a"]},
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        description='The version the order must have now: its ETag ("3", W/"3" or 3); else 409.',
        json_schema_extra={"pattern": IF_MATCH_PATTERN, "examples": ['"1"']},
    ),
]
StatusFilter = Annotated[
    Literal["pending", "shipped", "cancelled"] | None, Query(description="Only this status.")
]
SortBy = Annotated[
    Literal["created_at", "total_amount", "item_count"],
    Query(description="Sort key; ties are broken by creation order, in the same direction."),
]
SortOrder = Annotated[Literal["asc", "desc"], Query(description="Sort direction.")]
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page number, from 1.")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")]
SearchText = Annotated[
    str,
    Query(
        max_length=MAX_ID_LENGTH,
        description=(
            "Case-insensitive substring of the order id, the customer id or a product id (so "
            "at most an id's length); empty matches every order."
        ),
    ),
]


MinTotal = Annotated[
    str | None,
    Query(
        description="Smallest total, inclusive: a non-negative decimal string.",
        json_schema_extra={"pattern": AMOUNT_PATTERN, "examples": ["10.00"]},
    ),
]
MaxTotal = Annotated[
    str | None,
    Query(
        description="Largest total, inclusive: a non-negative decimal string.",
        json_schema_extra={"pattern": AMOUNT_PATTERN, "examples": ["99.99"]},
    ),
]


def read_id(value: str, field: str) -> str:
    """Check an id given in a read's path.

    Raises:
        InvalidQuery: It is not an id (no order, customer or product has it).
    """
    if id_problem(value, field) is not None:
        raise InvalidQuery(field, value[: MAX_ID_LENGTH + 1], f"an id: {ID_GRAMMAR}")
    return value


def command_id_of(key: str | None, aggregate_id: str) -> str | None:
    """Return the ``Idempotency-Key`` as a command id (None without one).

    Raises:
        InvalidCommand: It is not an id (empty, too long, a character outside the grammar).
    """
    if key is None:
        return None
    return validate_id(key, "Idempotency-Key", aggregate_id=aggregate_id)


def expected_version_of(if_match: str | None, aggregate_id: str) -> int | None:
    """Turn an ``If-Match`` header into an expected version (None without one).

    Raises:
        InvalidCommand: The header is not of :data:`IF_MATCH_PATTERN`.
    """
    if if_match is None:
        return None
    if _IF_MATCH.fullmatch(if_match) is None:
        raise InvalidCommand(
            aggregate_id,
            "invalid_if_match",
            f'If-Match must be an order version as sent in the ETag, like "3"; '
            f"got {if_match[:60]!r}",
        )
    return int(if_match.removeprefix("W/").strip('"'))
