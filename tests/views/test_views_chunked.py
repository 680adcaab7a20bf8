"""Sliced msgpack encoding: the same bytes as one call, whatever the sizes, with pauses between."""

from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from views._chunked import encode_array, encode_map

_encode = msgspec.msgpack.Encoder(decimal_format="string").encode

values = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.lists(st.integers(-(2**31), 2**31), max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(mapping=st.dictionaries(st.text(max_size=6), values, max_size=300), size=st.integers(1, 40))
def test_a_map_sliced_encodes_to_the_bytes_of_one_call(mapping: dict[str, Any], size: int) -> None:
    pauses: list[None] = []
    raw = b"".join(encode_map(mapping, _encode, size=size, pause=lambda: pauses.append(None)))
    assert raw == _encode(mapping)
    assert msgspec.msgpack.decode(raw, type=dict[str, Any]) == msgspec.msgpack.decode(
        _encode(mapping), type=dict[str, Any]
    )
    # One pause after each slice when the map is sliced at all.
    assert len(pauses) == (0 if len(mapping) <= size else -(-len(mapping) // size))


@settings(max_examples=200, deadline=None)
@given(items=st.lists(values, max_size=300), size=st.integers(1, 40))
def test_an_array_sliced_encodes_to_the_bytes_of_one_call(items: list[Any], size: int) -> None:
    pauses: list[None] = []
    raw = b"".join(encode_array(items, _encode, size=size, pause=lambda: pauses.append(None)))
    assert raw == _encode(items)
    assert len(pauses) == (0 if len(items) <= size else -(-len(items) // size))


def test_the_largest_headers_are_used_past_65535_elements() -> None:
    # map32 / array32 headers: only met past 2**16 elements, so tried once at that size.
    mapping = {f"k{i}": i for i in range(70_000)}
    assert b"".join(encode_map(mapping, _encode, size=4096)) == _encode(mapping)
    items = [Decimal("1.50")] * 70_000
    assert b"".join(encode_array(items, _encode, size=4096)) == _encode(items)
    small = {f"k{i}": i for i in range(20)}  # map16 and fixmap around the 16 boundary
    assert b"".join(encode_map(small, _encode, size=3)) == _encode(small)
