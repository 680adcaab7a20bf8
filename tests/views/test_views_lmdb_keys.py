"""The LMDB views' stored form of text keys and index values, and the layout record."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from views._lmdb_keys import (
    KEY_LAYOUT,
    UNREADABLE,
    pack,
    parse_version_record,
    unpack,
    version_record,
)
from views.orders import OrderDetailsModel

_UUID_TEXTS = st.uuids().map(str)


@given(st.text())
def test_every_text_unpacks_to_itself(text: str) -> None:
    assert unpack(pack(text)) == text


@given(_UUID_TEXTS)
def test_a_canonical_uuid_is_stored_in_17_bytes(text: str) -> None:
    assert pack(text) == b"\x00" + uuid.UUID(text).bytes
    assert unpack(pack(text)) == text


@given(_UUID_TEXTS)
def test_another_spelling_of_a_uuid_stays_text(text: str) -> None:
    upper = text.upper()
    if upper != text:
        assert pack(upper) == upper.encode()
    assert pack(text.replace("-", "")) == text.replace("-", "").encode()


@given(_UUID_TEXTS, st.sets(st.sampled_from([2, 5, 10, 15, 20, 25, 30, 34]), min_size=1))
def test_a_uuid_shape_with_more_dashes_stays_text(text: str, where: set[int]) -> None:
    # 36 characters, the four dashes in place, more dashes elsewhere: fewer than 16 bytes of
    # hex, which must not be stored as a (short) packed id nor collide with another text.
    odd = "".join("-" if index in where else char for index, char in enumerate(text))
    assert pack(odd) == odd.encode()
    assert unpack(pack(odd)) == odd


@given(st.lists(_UUID_TEXTS, min_size=2, max_size=8, unique=True))
def test_uuids_keep_their_order(texts: list[str]) -> None:
    # Time-ordered ids must still append: the views' "key above the top is absent" test relies
    # on it.
    assert sorted(texts, key=pack) == sorted(texts)


_PLAIN = st.text(min_size=1).filter(lambda t: t[0] not in "\x00\x01")


@given(st.lists(_PLAIN, min_size=2, max_size=8, unique=True))
def test_plain_texts_keep_their_utf8_order(texts: list[str]) -> None:
    assert sorted(texts, key=pack) == sorted(texts, key=str.encode)


@given(st.binary(min_size=16, max_size=16).filter(lambda b: all(x < 0x80 for x in b)))
def test_a_text_shaped_like_a_packed_uuid_is_escaped(tail: bytes) -> None:
    text = "\x00" + tail.decode()
    assert pack(text) == b"\x01" + text.encode()  # never b"\x00" + 16 bytes: no collision
    assert unpack(pack(text)) == text


@given(st.text(), st.text())
def test_packing_is_injective(first: str, second: str) -> None:
    assert (pack(first) == pack(second)) == (first == second)


def test_the_version_record_names_the_key_layout() -> None:
    assert parse_version_record(version_record(7)) == (7, KEY_LAYOUT)
    assert parse_version_record(b"3") == (3, 1)  # written before key layouts were recorded
    assert parse_version_record(None) == (1, 1)  # written before versions were recorded
    # What a later build may add after the layout is not ours to read: the layout still is.
    assert parse_version_record(b"4 keys=3 rows=zstd") == (4, 3)


@pytest.mark.parametrize("raw", [b"three", b"", b"3x", b"3 keys=", b"3 keys=two", b"\xff\xfe"])
def test_a_version_record_this_build_cannot_read_is_no_versions(raw: bytes) -> None:
    # Not an exception at open: rows of an unknown version are dropped and replayed.
    assert parse_version_record(raw) == UNREADABLE
    assert (OrderDetailsModel.version, KEY_LAYOUT) != UNREADABLE
