"""The search view's snapshot payload: its rows, their lines once each, the id texts, the postings.

Version 5 (this one) stores each distinct order line once, and each row's lines as numbers into
that list, so that a restore makes one line object per distinct line, shared by every row that
has it, as the live fold does (:func:`~views._order_rows.row_line`): rows restored whole (each
line decoded on its own, with its own product id and price strings) took ~2.4 KB an order where
the live rows take ~0.8 KB, so a restarted engine held three times the rows' memory. It also
halves the rows' bytes and decodes faster (ints instead of a struct and two strings per line).

Layout: a msgpack array ``[rows, lines, texts, grams]``; a row is an :class:`OrderRow`'s array
with the line numbers in place of its lines. Versions 3 and 4 are the array ``[rows, texts,
grams]`` with whole rows; :func:`decode_payload` reads both (they differ by their length).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import Annotated, Any, Final

import msgspec

from views._chunked import Parts, array_header, encode_array
from views._order_rows import OrderRow, RowLine, row_line
from views._search_postings import decode_grams, encode_grams

__all__ = ["decode_payload", "encode_payload"]


class _Row(OrderRow, frozen=True, array_like=True, gc=False):
    """An :class:`OrderRow` as a version 5 payload stores it: its lines as numbers.

    The redefined field keeps its place: the array is an OrderRow's but for that one field.
    """

    lines: list[Annotated[int, msgspec.Meta(ge=0)]]  # type: ignore[assignment]


_LINES_AT: Final = OrderRow.__struct_fields__.index("lines")
_WHOLE_ROWS: Final = 3  # parts of a version 3 or 4 payload: [rows, texts, grams]
_NUMBERED_LINES: Final = 4  # parts of a version 5 one: [rows, lines, texts, grams]
_encode: Final = msgspec.msgpack.encode
_parts: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])
_rows: Final = msgspec.msgpack.Decoder(list[_Row])
_whole_rows: Final = msgspec.msgpack.Decoder(list[OrderRow])
_lines: Final = msgspec.msgpack.Decoder(list[RowLine])
_texts: Final = msgspec.msgpack.Decoder(list[str])
_grams: Final = msgspec.msgpack.Decoder(dict[str, bytes])


def _numbered(rows: Sequence[OrderRow]) -> tuple[list[tuple[Any, ...]], list[RowLine]]:
    """Return the rows with their lines numbered, and the lines in number order."""
    numbers: dict[int, int] = {}  # by identity: equal lines are mostly one object already
    lines: list[RowLine] = []  # keeps every numbered line alive, so no id is reused meanwhile
    numbered: list[tuple[Any, ...]] = []
    astuple = msgspec.structs.astuple
    for row in rows:
        refs = []
        for line in row.lines:
            number = numbers.get(id(line))
            if number is None:
                number = numbers[id(line)] = len(lines)
                lines.append(line)
            refs.append(number)
        fields = astuple(row)
        numbered.append((*fields[:_LINES_AT], refs, *fields[_LINES_AT + 1 :]))
    return numbered, lines


def encode_payload(
    rows: Sequence[OrderRow], texts: list[str], grams: dict[str, array[int]]
) -> Parts:
    """Return the version 5 payload in parts (the rows a slice at a time, see ``_chunked``).

    ``grams`` may be the live postings: they are cut back to the ``len(texts)`` texts.
    """
    numbered, lines = _numbered(rows)
    return [
        array_header(4),
        *encode_array(numbered, _encode),
        _encode(lines),
        _encode(texts),
        _encode(encode_grams(grams, len(texts))),
    ]


def decode_payload(
    raw: bytes | memoryview,
) -> tuple[list[OrderRow], list[str], dict[str, array[int]]]:
    """Return the rows, texts and postings of a version 3, 4 or 5 payload.

    Raises:
        msgspec.DecodeError: ``raw`` is none of them (a ``ValidationError`` is one).
    """
    parts = _parts.decode(raw)
    if len(parts) == _WHOLE_ROWS:
        rows = _whole_rows.decode(parts[0])
    elif len(parts) == _NUMBERED_LINES:
        # The live fold's shared lines, so that restored rows and new ones share them too.
        shared = [row_line(ln.product_id, ln.quantity, ln.price) for ln in _lines.decode(parts[1])]
        try:
            rows = [_row(row, shared) for row in _rows.decode(parts[0])]
        except IndexError as error:
            raise msgspec.DecodeError(f"a row names a line that is not there ({error})") from error
        parts = [parts[0], *parts[2:]]
    else:
        raise msgspec.DecodeError(f"a search payload has 3 or 4 parts, not {len(parts)}")
    return rows, _texts.decode(parts[1]), decode_grams(_grams.decode(parts[2]))


def _row(row: _Row, shared: list[RowLine]) -> OrderRow:
    return OrderRow(
        row.order_id,
        sys.intern(row.customer_id),  # one string per customer, as the live rows
        row.status,
        row.total_amount,
        row.item_count,
        row.created_at,
        row.shipped_at,
        row.position,
        tuple([shared[number] for number in row.lines]),
        row.created_us,
        row.haystack,
    )
