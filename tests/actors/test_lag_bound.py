"""The views' lag bound (actors._lag_bound): when it holds the door, and what it refuses."""

from __future__ import annotations

import pytest

from actors._lag_bound import LagBound, check_max_view_lag


def test_it_holds_past_the_limit_and_lets_go_within_it_telling_changes_only() -> None:
    told: list[bool] = []
    bound = LagBound(100, told.append)
    bound.update(100, [0, 50])  # 100 behind: within
    assert told == []
    bound.update(101, [0, 50])  # 101 behind: past
    bound.update(150, [0, 120])  # still past: not told again
    assert told == [True]
    bound.update(150, [50, 120])  # the slowest 100 behind: within
    assert told == [True, False]
    assert not bound.holding


def test_no_counted_view_never_holds() -> None:
    told: list[bool] = []
    bound = LagBound(1, told.append)
    bound.update(10**6, [])  # every view stalled, retrying or folding: none counted
    assert told == []


def test_release_lets_go_once() -> None:
    told: list[bool] = []
    bound = LagBound(1, told.append)
    bound.update(10, [0])
    bound.release()
    bound.release()
    assert told == [True, False]


@pytest.mark.parametrize(
    ("limit", "projection", "error", "match"),
    [
        (0, "in-process", ValueError, "at least 1"),
        (-5, "in-process", ValueError, "at least 1"),
        (1.5, "in-process", TypeError, "number of events"),
        (True, "in-process", TypeError, "number of events"),
        (100, "process", ValueError, "projection='in-process'"),
    ],
)
def test_a_bound_the_engine_cannot_keep_is_refused(
    limit: object, projection: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        check_max_view_lag(limit, projection)


def test_none_and_a_positive_count_in_process_are_accepted() -> None:
    check_max_view_lag(None, "process")
    check_max_view_lag(1, "in-process")
