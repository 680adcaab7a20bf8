r"""The bytes the LMDB views store for a text key or index value, and the record of that layout.

Key layout 2 (this one): a canonical UUID (36 characters, lowercase hex, the form ``str(uuid)``
gives) is stored as ``b"\x00"`` + its 16 bytes, any other text as its UTF-8, escaped with a
leading ``b"\x01"`` when its first byte is ``0x00`` or ``0x01`` (so no plain text can pass for a
packed UUID). The order views key every row by an order id and index every order by it: packing
took their keys from 43 to 24 bytes and the customer index's values from 36 to 17 (layout 1
stored the UTF-8 alone). The packing is injective and keeps the order of UUIDs among themselves
(time-ordered ids still append) and of plain texts among themselves; UUIDs sort first.

Each view's record in ``view:_versions`` names its key layout beside its read-model version
(:func:`version_record`): rows stored under another layout are dropped and replayed from the log
like rows of another version, since their keys would be looked up wrong.
"""

from __future__ import annotations

from typing import Final

from store import uuid_bytes, uuid_text

__all__ = ["KEY_LAYOUT", "UNREADABLE", "pack", "parse_version_record", "unpack", "version_record"]

KEY_LAYOUT: Final = 2
_PACKED: Final = 0x00
_ESCAPED: Final = 0x01
_PACKED_LENGTH: Final = 17
UNREADABLE: Final = (0, 0)
"""What :func:`parse_version_record` returns for a record it cannot read: no version's."""


# Not lru_cached: with more live orders than a cache holds (a rebuild over 100k orders), every
# call missed and a miss cost 0.89 us; the test costs 0.40 us for a UUID, 0.11 for other text.
# The LMDB batch tables pack each row's key once per batch.
def pack(text: str) -> bytes:
    """Return the stored bytes of ``text`` (see the module docstring)."""
    packed = uuid_bytes(text)
    if packed is not None:
        return b"\x00" + packed
    raw = text.encode()
    if raw and raw[0] <= _ESCAPED:
        return b"\x01" + raw
    return raw


def unpack(raw: bytes) -> str:
    """Return the text whose :func:`pack` is ``raw``."""
    if not raw:
        return ""
    first = raw[0]
    if first == _PACKED and len(raw) == _PACKED_LENGTH:
        return uuid_text(raw[1:])
    if first == _ESCAPED:
        return raw[1:].decode()
    return raw.decode()


def version_record(version: int) -> bytes:
    """Return what ``view:_versions`` holds for rows of read-model ``version`` in this layout."""
    return f"{version} keys={KEY_LAYOUT}".encode()


def parse_version_record(raw: bytes | memoryview | None) -> tuple[int, int]:
    """Return (read-model version, key layout) of a ``view:_versions`` record.

    No record: version 1 in layout 1 (both predate the record); a bare number: layout 1. Fields
    after the layout (a later build's) are ignored. A record this build cannot read at all (a
    damaged table) is ``(0, 0)``, which matches no read model: its rows are dropped and replayed
    from the log like another version's, never misread, and opening does not fail on them.
    """
    if raw is None:
        return 1, 1
    # "<version>[ keys=<layout>]", then whatever a later build adds after a space.
    fields = bytes(raw).split(b" ")
    version = fields[0]
    layout = fields[1].removeprefix(b"keys=") if len(fields) > 1 else b"1"
    if not (version.isdigit() and layout.isdigit()):
        return UNREADABLE
    return int(version), int(layout)
