"""Canonical UUID text and its 16 bytes: the one test both the command keys and views use."""

import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from store import uuid_bytes, uuid_text

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUIDS = st.uuids().map(str)


def _variant(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


_SHAPED = st.one_of(
    _UUIDS,
    _UUIDS.map(str.upper),
    st.builds(_variant, _UUIDS, st.integers(0, 35), st.sampled_from("-gG0 \t\n\u00e9")),
    st.text(min_size=36, max_size=36),
)


@given(_SHAPED)
def test_only_the_canonical_form_has_bytes(text: str) -> None:
    # The same answer as the regular expression the store used before the test by hand.
    raw = uuid_bytes(text)
    if _CANONICAL.fullmatch(text) is None:
        assert raw is None
    else:
        assert raw == uuid.UUID(text).bytes
        assert uuid_text(raw) == text
