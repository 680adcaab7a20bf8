"""The payload of a memory view's snapshot: its tables and indexes as msgpack.

Layout: a msgpack array ``[tables, indexes]`` where ``tables`` maps each table's name to the
msgpack map of its rows (``{key: row}``) and ``indexes`` maps each index's name to
``{group: [[position, value], ...]}``.

Rows are typed only when a read model asks for a table (``storage.table(name, row_type)``), so
there is no registry of row types to decode them with up front. :func:`decode_state` therefore
keeps each table's map as :class:`msgspec.Raw` (a zero-copy slice of the snapshot), and
:func:`decode_rows` splits it into its rows the first time the model asks for it, each row
still encoded (:class:`msgspec.Raw`) but the first, decoded there to check the type: a row is
decoded when it is read (:func:`decode_row`). A model reads the rows its events touch, so a
restarted view keeps the others at their encoded size: the order stats' rows took ~2.3 KB an
order decoded (each line with its own strings) against ~0.3 KB encoded, where the live rows,
shared with the search view, cost it nothing.

Encoding is msgspec's native msgpack: Decimals as strings (their exponent survives, so ``10.50``
comes back as ``10.50``), aware datetimes as timestamps (back as UTC), tuples and nested Structs
as arrays typed again by the row type on decode. Rows round-trip equal to the originals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeVar

import msgspec

from views._chunked import Parts, array_header, encode_map, map_header
from views._view import row_decoder

__all__ = [
    "IndexEntries",
    "SnapshotRowsError",
    "TableRows",
    "decode_row",
    "decode_rows",
    "decode_state",
    "encode_state",
]

V = TypeVar("V")

IndexEntries = dict[str, list[tuple[int, str]]]
"""One index: per group, its (position, value) entries sorted by position."""

TableRows = dict[str, Any] | msgspec.Raw
"""One table in a snapshot: its rows, or the raw msgpack of a restored table not decoded yet."""


class SnapshotRowsError(Exception):
    """A restored table's rows do not decode as the row type the read model asks for.

    The snapshot's frame and checksum were right, so the read model's row type changed without
    its ``version`` being bumped. The view cannot go on from this state: rebuild it from the log
    (and bump the read model's ``version``, so that old snapshots are discarded at open).

    Attributes:
        view: The view's name.
        table: The table's name.
        row_type: The row type the read model asked for.
    """

    def __init__(self, view: str, table: str, row_type: object, error: Exception) -> None:
        super().__init__(
            f"view {view!r}: the snapshot's table {table!r} does not decode as {row_type!r} "
            f"({error}); the read model's row type changed without a `version` bump: "
            "rebuild the view, and bump the read model's version"
        )
        self.view = view
        self.table = table
        self.row_type = row_type


class _Payload(msgspec.Struct, frozen=True, array_like=True):
    tables: dict[str, msgspec.Raw]
    indexes: dict[str, IndexEntries]


# One encoder for every row type: msgpack needs no type to encode. decimal_format is the default,
# spelled out because the decoder relies on it: a Decimal as a string keeps its exponent.
_encoder: Final = msgspec.msgpack.Encoder(decimal_format="string")
_payload_decoder: Final = msgspec.msgpack.Decoder(_Payload)


def encode_state(tables: Mapping[str, TableRows], indexes: Mapping[str, IndexEntries]) -> Parts:
    """Return the payload for ``tables`` and ``indexes``, in parts (see :mod:`views._chunked`).

    The rows are encoded as they are (no copy): a rows dict must not change during the call.
    Big tables and indexes are encoded a slice at a time, letting other threads run between
    slices; joined, the parts are the bytes of one ``encode((tables, indexes))`` call.
    """
    encode = _encoder.encode
    parts: Parts = [array_header(2), map_header(len(tables))]
    for name, rows in tables.items():
        parts.append(encode(name))
        if isinstance(rows, msgspec.Raw):  # a restored table not decoded yet: as it came
            parts.append(memoryview(rows))
        else:
            parts.extend(encode_map(rows, encode))
    parts.append(map_header(len(indexes)))
    for name, groups in indexes.items():
        parts.append(encode(name))
        parts.extend(encode_map(groups, encode))
    return parts


def decode_state(
    payload: bytes | memoryview,
) -> tuple[dict[str, msgspec.Raw], dict[str, IndexEntries]]:
    """Return ``(tables, indexes)``: the tables still raw (see :func:`decode_rows`).

    Raises:
        msgspec.DecodeError: ``payload`` is not a memory view's state.
    """
    state = _payload_decoder.decode(payload)
    return state.tables, state.indexes


def decode_rows(view: str, table: str, raw: msgspec.Raw, row_type: type[V]) -> dict[str, Any]:
    """Split a restored table into its rows: each a :class:`msgspec.Raw` but the first, decoded.

    Raises:
        SnapshotRowsError: The table is not a map of rows, or its first row not a ``row_type``.
    """
    try:
        rows: dict[str, Any] = _raw_rows.decode(raw)
    except msgspec.DecodeError as error:  # ValidationError is a DecodeError
        raise SnapshotRowsError(view, table, row_type, error) from error
    first = next(iter(rows), None)
    if first is not None:  # the first row says whether they are row_type's
        rows[first] = decode_row(view, table, rows[first], row_decoder(row_type))
    return rows


def decode_row(view: str, table: str, raw: msgspec.Raw, decoder: msgspec.msgpack.Decoder[V]) -> V:
    """Decode one row of a restored table.

    Raises:
        SnapshotRowsError: The row is not the decoder's type.
    """
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError as error:  # ValidationError is a DecodeError
        raise SnapshotRowsError(view, table, decoder.type, error) from error


_raw_rows: Final = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])
