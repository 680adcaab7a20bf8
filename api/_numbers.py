"""Numbers on the wire: exact, and checked exactly as the published schema says.

A quantity arrives as raw JSON (:data:`api._schemas.Quantity`): JSON Schema's ``integer`` is
any number without a fractional part, so ``3.0`` and ``3e0`` are 3 too (msgspec's ``int``
refused them). A price arrives as raw JSON (:data:`api._schemas.Price`): a string must match
:data:`~api._schemas.PRICE_PATTERN`; a number is read from its literal digits (never through a
float) and must be a multiple of 0.000001 from 0 to 1,000,000,000, which is what the schema's
``minimum``/``maximum``/``multipleOf`` say. Search bounds are strings of
:data:`~api._schemas.AMOUNT_PATTERN`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

import msgspec

from api._body import InvalidBody
from api._schemas import AMOUNT_PATTERN, PRICE_PATTERN
from domain.errors import InvalidQuery
from domain.orders import MAX_PRICE, MAX_PRICE_PLACES, MAX_QUANTITY

__all__ = ["read_amount", "read_price", "read_quantity"]

_PRICE: Final = re.compile(PRICE_PATTERN)
_AMOUNT: Final = re.compile(AMOUNT_PATTERN)
_STEP: Final = Decimal(1).scaleb(-MAX_PRICE_PLACES)
_NUMBER_START: Final = frozenset(b"-0123456789")
_RULE: Final = (
    f"0 to {int(MAX_PRICE)} with at most {MAX_PRICE_PLACES} decimal places, as a decimal "
    'string like "12.30" or a JSON number'
)


def read_quantity(raw: msgspec.Raw, where: str) -> int:
    """Return the whole number of units held by the raw JSON value ``raw`` (at ``where``).

    Raises:
        InvalidBody: It is not a whole number from 1 to the quantity limit.
    """
    data = bytes(raw)
    rule = f"a whole number from 1 to {MAX_QUANTITY}"
    if not data[:1] or data[0] not in _NUMBER_START:
        raise InvalidBody(f"invalid body: {where} must be {rule}")
    value = Decimal(data.decode())
    if not 1 <= value <= MAX_QUANTITY or value != value.to_integral_value():
        raise InvalidBody(f"invalid body: {where} must be {rule}; got {data[:40].decode()}")
    return int(value)


def read_price(raw: msgspec.Raw, where: str) -> Decimal:
    """Return the exact price held by the raw JSON value ``raw`` (at ``where``, e.g. ``$.price``).

    Raises:
        InvalidBody: It is not a price the schema allows; the message names ``where``.
    """
    data = bytes(raw)
    if data[:1] == b'"':
        text = msgspec.json.decode(data, type=str)
        if _PRICE.fullmatch(text) is None:
            raise InvalidBody(f"invalid body: {where} must be {_RULE}; got {text[:40]!r}")
        return Decimal(text)
    if data[:1] and data[0] in _NUMBER_START:
        # The JSON decoder has checked the number's grammar: Decimal reads it digit for digit.
        value = Decimal(data.decode())
        if not 0 <= value <= MAX_PRICE:
            raise InvalidBody(f"invalid body: {where} must be {_RULE}; got {data[:40].decode()}")
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_PRICE_PLACES:
            exact = value.quantize(_STEP)
            if exact != value:
                raise InvalidBody(
                    f"invalid body: {where} has more than {MAX_PRICE_PLACES} decimal places"
                )
            value = exact  # 1.50000000 is the multiple of 0.000001 it equals: 1.500000
        elif isinstance(exponent, int) and exponent > 0:
            value = value.quantize(Decimal(1))  # 1E+2 is stored as 100
        return value + 0  # -0 becomes 0
    raise InvalidBody(f"invalid body: {where} must be {_RULE}")


def read_amount(field: str, raw: str | None) -> Decimal | None:
    """Return a search bound given as a query parameter (None if absent).

    Raises:
        InvalidQuery: It is not a non-negative decimal string of the schema's pattern.
    """
    if raw is None:
        return None
    if _AMOUNT.fullmatch(raw) is None:
        raise InvalidQuery(
            field, raw[:60], "a non-negative decimal number with at most 6 places, like 12.50"
        )
    return Decimal(raw)
