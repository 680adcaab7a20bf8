"""The postings of the search index's trigram lists, as bytes for a snapshot.

A posting list is an ``array`` of text numbers in ascending order; a snapshot stores each as
little-endian 32-bit integers, so a file written on one CPU reads back on any other.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from typing import Final

__all__ = ["TYPECODE", "decode_grams", "encode_grams"]

TYPECODE: Final = "I"  # 32-bit unsigned on every CPython ABI: 4 bytes per posting


def encode_grams(grams: dict[str, array[int]], texts: int) -> dict[str, bytes]:
    """Encode postings as little-endian bytes, keeping only texts numbered below ``texts``."""
    encoded: dict[str, bytes] = {}
    for gram, posting in grams.items():
        # Appends made since export() are numbered >= texts and sit at the end (ascending).
        part = posting[: bisect.bisect_left(posting, texts)]
        if sys.byteorder == "big":
            part.byteswap()
        encoded[gram] = part.tobytes()
    return encoded


def decode_grams(encoded: dict[str, bytes]) -> dict[str, array[int]]:
    """Decode what :func:`encode_grams` made."""
    grams: dict[str, array[int]] = {}
    for gram, raw in encoded.items():
        posting = array(TYPECODE)
        posting.frombytes(raw)
        if sys.byteorder == "big":
            posting.byteswap()
        grams[gram] = posting
    return grams
