"""The owners of a search text in their smallest shape: one id, a list, a set past LIST_MAX."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from views import _search_owners as search_owners
from views._search_owners import (
    NO_OWNER,
    Owners,
    add_owner,
    drop_owner,
    owner_count,
    owner_sets,
    union,
)


def test_each_shape_in_turn_and_back_to_no_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_owners, "LIST_MAX", 3)
    owners: list[Owners] = [NO_OWNER, NO_OWNER]
    shapes: list[Owners] = []
    for order_id in ("a", "a", "b", "c", "d"):  # "a" twice: an owner already, unchanged
        add_owner(owners, 0, order_id)
        shapes.append(owners[0] if isinstance(owners[0], str) else owners[0].copy())
    # The id itself (no container), then a list, then past LIST_MAX a set.
    assert shapes == ["a", "a", ["a", "b"], ["a", "b", "c"], {"a", "b", "c", "d"}]
    for order_id in ("a", "b", "c", "d", "never"):
        drop_owner(owners, 0, order_id)
    assert owner_count(owners[0]) == 0
    assert owners[1] is NO_OWNER  # the shared empty owners were never written to
    assert not NO_OWNER


@given(
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.sampled_from("abcdef"))),
    list_max=st.integers(1, 4),
)
def test_owners_behave_as_sets_of_ids(steps: list[tuple[bool, int, str]], list_max: int) -> None:
    # The callers' rule: an order is added only to a text it does not own yet.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_owners, "LIST_MAX", list_max)
        owners: list[Owners] = [NO_OWNER] * 3
        expected: list[set[str]] = [set(), set(), set()]
        for add, number, order_id in steps:
            if add and order_id not in expected[number]:
                add_owner(owners, number, order_id)
                expected[number].add(order_id)
            elif not add:
                drop_owner(owners, number, order_id)
                expected[number].discard(order_id)
        assert owner_sets(owners) == expected
        assert [owner_count(held) for held in owners] == [len(ids) for ids in expected]
        assert union(owners, [0, 2]) == expected[0] | expected[2]
        assert union(owners, []) == set()
