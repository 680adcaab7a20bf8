"""Canonical UUID text as its 16 bytes and back: what the stored keys pack.

Both the idempotency table (:mod:`store._commands`) and the LMDB views (:mod:`views._lmdb_keys`)
store a canonical UUID (36 characters, lowercase hex, the form ``str(uuid)`` gives) as its 16
bytes behind a marker; each decides its own marker and how other text is kept apart.
"""

from __future__ import annotations

from typing import Final

__all__ = ["uuid_bytes", "uuid_text"]

_TEXT_LENGTH: Final = 36
_BYTES: Final = 16


def uuid_bytes(text: str) -> bytes | None:
    """Return the 16 bytes of ``text`` if it is a canonical UUID, else None.

    A test by hand, not a regular expression: 0.40 us against 0.64 for a UUID (a view packs
    every row's key, a miss of any cache at 100k live orders).
    """
    if (
        len(text) == _TEXT_LENGTH
        and text[8] == "-"
        and text[13] == "-"
        and text[18] == "-"
        and text[23] == "-"
    ):
        digits = text.replace("-", "")
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            return None
        # fromhex also takes uppercase digits and whitespace, and more dashes elsewhere leave
        # fewer digits: only 16 bytes that round-trip are the canonical form.
        if len(raw) == _BYTES and raw.hex() == digits:
            return raw
    return None


def uuid_text(raw: bytes) -> str:
    """Return the canonical text of the UUID whose 16 bytes are ``raw``."""
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
