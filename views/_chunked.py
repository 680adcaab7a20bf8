"""msgpack encoding in slices, so that other threads run between them.

A memory view's snapshot is encoded outside the view's lock, but msgspec encodes in one C call
that holds the GIL throughout: at 50k orders the search view's rows took ~0.6 s and the stats
view's ~0.3 s, and for that long no command was committed, no view applied, no query answered
(the ack -> visible and point-query p99 figures showed those stalls). Here a big map or array is
encoded a slice at a time, and the GIL is offered to other threads between slices.

The result is a list of parts, never joined: copying ~100 MB into one buffer (and again to frame
it) cost another ~0.4 s with the GIL held. The parts are checksummed and written one by one
(``zlib.crc32`` and ``os.write`` release the GIL). Joined, they are exactly the bytes of one
``encode`` call (the smallest msgpack header, then every element in order), so a snapshot reads
back with the same decoders.

The mapping or sequence must not change while it is encoded: snapshots encode their own copies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, Final

__all__ = ["SLICE", "Parts", "array_header", "encode_array", "encode_map", "map_header"]

SLICE: Final = 512
"""Elements encoded per slice: a few milliseconds of encoding at most for an order row."""

Parts = list[bytes | memoryview]
"""Encoded bytes in pieces, in order: joined, one msgpack value (or a framed snapshot)."""

Encode = Callable[[Any], bytes]


def _yield_gil() -> None:
    # sleep(0) releases the GIL; a thread that has waited a switch interval takes it then.
    time.sleep(0)


def _header(size: int, fix: int, sixteen: int, thirty_two: int) -> bytes:
    if size < 16:  # noqa: PLR2004 - msgpack's fixmap/fixarray limit
        return bytes((fix | size,))
    if size < 1 << 16:
        return bytes((sixteen,)) + size.to_bytes(2, "big")
    return bytes((thirty_two,)) + size.to_bytes(4, "big")


def map_header(size: int) -> bytes:
    """The msgpack header of a map of ``size`` entries (the smallest form, as msgspec writes)."""
    return _header(size, 0x80, 0xDE, 0xDF)


def array_header(size: int) -> bytes:
    """The msgpack header of an array of ``size`` items (the smallest form, as msgspec writes)."""
    return _header(size, 0x90, 0xDC, 0xDD)


def _body(encoded: bytes) -> memoryview:
    """``encoded`` (a map or an array) without its header."""
    first = encoded[0]
    skip = 1 if first < 0xDC else (3 if first in (0xDC, 0xDE) else 5)  # noqa: PLR2004
    return memoryview(encoded)[skip:]


def _sliced(
    header: bytes, slices: Iterable[Any], encode: Encode, pause: Callable[[], None]
) -> Parts:
    parts: Parts = [header]
    for part in slices:
        parts.append(_body(encode(part)))
        pause()
    return parts


def encode_map(
    mapping: Mapping[Any, Any],
    encode: Encode,
    *,
    size: int = SLICE,
    pause: Callable[[], None] = _yield_gil,
) -> Parts:
    """Encode ``mapping`` as one msgpack map, ``size`` entries per slice, pausing between."""
    if len(mapping) <= size:
        return [encode(mapping)]
    items = iter(mapping.items())
    slices = iter(lambda: dict(islice(items, size)), {})
    return _sliced(map_header(len(mapping)), slices, encode, pause)


def encode_array(
    items: Sequence[Any],
    encode: Encode,
    *,
    size: int = SLICE,
    pause: Callable[[], None] = _yield_gil,
) -> Parts:
    """Encode ``items`` as one msgpack array, ``size`` items per slice, pausing between."""
    if len(items) <= size:
        return [encode(items)]
    slices = (items[start : start + size] for start in range(0, len(items), size))
    return _sliced(array_header(len(items)), slices, encode, pause)
