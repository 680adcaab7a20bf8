import re
import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidCommand
from domain.ids import (
    ID_GRAMMAR,
    ID_PATTERN,
    MAX_ID_LENGTH,
    RESERVED_IDS,
    id_problem,
    new_id,
    validate_id,
)
from domain.orders import ShipOrder

GOOD = ["a", "0", "order-1", "Cust_9", "a.b~c_d-e", "Search", "searches", "x" * MAX_ID_LENGTH]
BAD = [
    ("", "empty_id"),
    ("search", "reserved_id"),
    ("a/b", "invalid_id"),
    ("a b", "invalid_id"),
    ("a\n", "invalid_id"),
    ("a\x00", "invalid_id"),
    ("caf\u00e9", "invalid_id"),
    ("\udfff", "invalid_id"),
    ("a%2Fb", "invalid_id"),
    (".", "invalid_id"),
    ("..", "invalid_id"),
    ("-rf", "invalid_id"),
    ("_a", "invalid_id"),
    ("x" * (MAX_ID_LENGTH + 1), "too_long"),
]


@pytest.mark.parametrize("value", GOOD)
def test_ids_of_the_grammar_are_returned_as_they_are(value: str) -> None:
    assert validate_id(value, "order_id") is value
    assert id_problem(value) is None


@pytest.mark.parametrize(("value", "rule"), BAD)
def test_anything_else_is_an_invalid_command_naming_the_field_and_the_rule(
    value: str, rule: str
) -> None:
    with pytest.raises(InvalidCommand) as caught:
        validate_id(value, "product_id", aggregate_id="o-1")
    assert caught.value.rule == rule
    assert caught.value.aggregate_id == "o-1"
    assert "product_id" in str(caught.value)
    str(caught.value).encode()  # printable as UTF-8 even for a lone surrogate


@pytest.mark.parametrize("value", [None, 42, b"abc", ["a"]])
def test_a_value_that_is_not_a_string_is_an_invalid_type(value: object) -> None:
    with pytest.raises(InvalidCommand) as caught:
        validate_id(value, "command_id")
    assert caught.value.rule == "invalid_type"
    assert "command_id must be a string" in str(caught.value)


def test_an_empty_id_says_what_an_id_is() -> None:
    with pytest.raises(InvalidCommand, match="must not be empty") as caught:
        validate_id("", "Idempotency-Key")
    assert ID_GRAMMAR in str(caught.value)
    assert "Idempotency-Key" in str(caught.value)


def test_uuids_are_ids() -> None:
    for _ in range(100):
        assert validate_id(str(uuid.uuid4()), "command_id")
        assert validate_id(uuid.uuid4().hex, "command_id")


def test_every_reserved_word_is_excluded_by_the_published_pattern() -> None:
    assert "search" in RESERVED_IDS
    assert all(re.fullmatch(ID_PATTERN, word) is None for word in RESERVED_IDS)


@given(st.text(max_size=MAX_ID_LENGTH + 2))
def test_the_published_pattern_and_the_check_agree_on_any_text(value: str) -> None:
    assert (re.fullmatch(ID_PATTERN, value) is not None) == (id_problem(value) is None)


@given(st.from_regex(ID_PATTERN, fullmatch=True))
def test_every_text_the_pattern_generates_is_an_id(value: str) -> None:
    assert validate_id(value, "id") == value


def test_default_ids_are_time_ordered_uuid7_of_the_grammar() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert ids == sorted(ids)  # made later, sorts later: B-tree inserts append
    assert len(set(ids)) == len(ids)
    for value in ids[:100]:
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert validate_id(value, "command_id") == value
    # The leading 48 bits are the Unix time in milliseconds.
    millis = uuid.UUID(ids[-1]).int >> 80
    assert abs(millis - time.time_ns() // 1_000_000) < 60_000


def test_commands_get_time_ordered_ids_by_default() -> None:
    first, second = ShipOrder(order_id="o1"), ShipOrder(order_id="o1")
    assert first.command_id < second.command_id
    assert uuid.UUID(first.command_id).version == 7
