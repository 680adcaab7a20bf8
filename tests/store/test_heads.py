"""store._heads: the heads the writer committed, and appends that read them instead of LMDB."""

from __future__ import annotations

import contextlib
import pathlib
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import lmdb
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import ConcurrencyConflict, EngineError
from domain.orders import OrderItemAdded
from store import Codec, Committed, EventStore, StreamAppend, _append
from store._heads import HeadsCache


def _append_to(stream_id: str, expected: int, count: int = 1) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        stream_type="order",
        expected_version=expected,
        events=[
            OrderItemAdded(
                order_id=stream_id, product_id=f"sku-{i}", quantity=1, price=Decimal("1.50")
            )
            for i in range(count)
        ],
    )


def test_split_returns_the_heads_held_and_the_keys_to_read() -> None:
    heads = HeadsCache()
    token = heads.begin()
    heads.put({b"a": 3, b"b": 1})
    heads.settled(token)

    assert heads.split([b"a", b"c", b"b"]) == ({b"a": 3, b"b": 1}, [b"c"])


def test_a_batch_whose_commit_never_returned_is_forgotten_by_the_next() -> None:
    heads = HeadsCache()
    settled = heads.begin()
    heads.put({b"a": 1})
    heads.settled(settled)
    heads.begin()
    heads.put({b"a": 2})  # its commit failed: never settled

    heads.begin()

    assert heads.split([b"a"]) == ({}, [b"a"])


def test_a_settle_after_a_later_batch_began_does_not_vouch_for_it() -> None:
    heads = HeadsCache()
    first = heads.begin()
    heads.put({b"a": 1})
    second = heads.begin()  # the first's commit had not returned: forgotten
    heads.put({b"a": 2})
    heads.settled(first)  # late: must not close the second's token

    heads.begin()  # the second never settled

    assert heads.split([b"a"]) == ({}, [b"a"])
    assert second != first


def test_two_generations_bound_it_and_keep_the_streams_written_last() -> None:
    heads = HeadsCache(size=3)
    for number in range(20):
        token = heads.begin()
        heads.put({bytes([number]): number})
        heads.settled(token)
        assert len(heads) <= 6

    held, missing = heads.split(bytes([n]) for n in range(20))
    assert all(held[bytes([n])] == n for n in range(17, 20))  # the last ones are kept
    assert all(value == key[0] for key, value in held.items())
    assert len(held) <= 6
    assert len(held) + len(missing) == 20


def _failing_after_the_batch(real: Callable[..., Any], fail: list[bool]) -> Callable[..., Any]:
    # Fault injection around the real batch: it runs (its heads reach the cache), then the
    # transaction fails before its commit, as an LMDB error there would.
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if fail and fail.pop():
            raise lmdb.Error("injected: the commit failed")
        return result

    return wrapped


def test_heads_of_a_failed_commit_never_decide_an_append(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store.append_batch([_append_to("a", 0)])[0], Committed)
    fail = [True]
    monkeypatch.setattr(
        _append, "append_in_txn", _failing_after_the_batch(_append.append_in_txn, fail)
    )

    with pytest.raises(lmdb.Error, match="injected"):
        store.append_batch([_append_to("a", 1, count=2)])  # would have made the head 3

    # The head is still 1: an append expecting 1 commits, one expecting 3 conflicts.
    assert isinstance(store.append_batch([_append_to("a", 3)])[0], ConcurrencyConflict)
    assert store.append_batch([_append_to("a", 1)])[0] == Committed("a", 2, 2, 2)
    assert store.stream_version("a", stream_type="order") == 2


_STREAMS = ("s0", "s1", "s2")

_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _steps(
    append: st.SearchStrategy[tuple[str, int, int]],
) -> st.SearchStrategy[list[tuple[list[tuple[str, int, int]], bool]]]:
    """Batches of 1-4 appends, each batch failing before its commit or not."""
    return st.lists(
        st.tuples(st.lists(append, min_size=1, max_size=4), st.booleans()),
        min_size=1,
        max_size=12,
    )


Run = Callable[[list[StreamAppend], bool], "list[Committed | EngineError] | None"]


@contextlib.contextmanager
def _store_with_failing_batches(codec: Codec) -> Iterator[tuple[EventStore, Run]]:
    """A fresh store, and ``run(appends, fails)``: the batch's results, or None if it failed.

    A failing batch runs for real (its heads reach the cache), then its transaction fails
    before the commit (fault injection around the real ``append_in_txn``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(pathlib.Path(tmp) / "data", codec=codec, durability="async")
        real = _append.append_in_txn
        fail: list[bool] = []
        _append.append_in_txn = _failing_after_the_batch(real, fail)

        def run(appends: list[StreamAppend], fails: bool) -> list[Committed | EngineError] | None:
            fail[:] = [fails]
            if not fails:
                return store.append_batch(appends)
            with pytest.raises(lmdb.Error, match="injected"):
                store.append_batch(appends)
            return None

        try:
            yield store, run
        finally:
            _append.append_in_txn = real
            store.close()


@_SETTINGS
@given(steps=_steps(st.tuples(st.sampled_from(_STREAMS), st.integers(-1, 1), st.integers(1, 2))))
def test_appends_conflict_exactly_as_the_heads_in_the_log_say(
    codec: Codec,
    steps: list[tuple[list[tuple[str, int, int]], bool]],
) -> None:
    # Each batch's appends expect their stream's true head (offset 0) or a wrong one; some
    # batches fail before their commit. A model of the heads decides every outcome.
    model = dict.fromkeys(_STREAMS, 0)
    with _store_with_failing_batches(codec) as (store, run):
        for batch, fails in steps:
            # Expected versions from the heads before the batch: a second append to a
            # stream in one batch commits only if it expects what the first one left.
            appends = [
                _append_to(stream, max(0, model[stream] + offset), count)
                for stream, offset, count in batch
            ]
            results = run(appends, fails)
            if results is None:
                continue
            for append, result in zip(appends, results, strict=True):
                head = model[append.stream_id]
                if append.expected_version == head:
                    assert isinstance(result, Committed), result
                    model[append.stream_id] = head + len(append.events)
                else:
                    assert isinstance(result, ConcurrencyConflict), result
        for stream in _STREAMS:
            assert store.stream_version(stream, stream_type="order") == model[stream]


def test_the_command_top_is_raised_by_commits_and_forgotten_with_an_unsettled_batch() -> None:
    heads = HeadsCache()
    token = heads.begin()
    assert _top(heads) is None  # unknown: the batch reads the table's last key
    heads.raise_command_top(b"\x00b")
    heads.raise_command_top(b"\x00a")  # lower: the top stays
    heads.settled(token)
    heads.begin()
    assert _top(heads) == b"\x00b"
    heads.raise_command_top(b"\x00c")  # this batch's commit never returns

    heads.begin()

    assert _top(heads) is None


def _top(heads: HeadsCache) -> bytes | None:
    # Read through a function: mypy would keep the narrowing of the assertion above.
    return heads.command_top


# Time-ordered (version 7) command ids, as new_id makes them: each above the ones before.
_COMMAND_IDS = tuple(f"0190{n:04x}-0000-7000-8000-000000000000" for n in range(6))


@_SETTINGS
@given(
    steps=_steps(
        st.tuples(
            st.sampled_from(_STREAMS),
            st.integers(-1, 0),
            st.integers(0, len(_COMMAND_IDS) - 1),
        )
    )
)
def test_a_retried_command_id_is_answered_as_recorded_and_a_new_one_commits(
    codec: Codec,
    steps: list[tuple[list[tuple[str, int, int]], bool]],
) -> None:
    # Ids are drawn in time order with retries of earlier ones mixed in; some batches fail
    # before their commit. A model of what was recorded decides every outcome.
    heads = dict.fromkeys(_STREAMS, 0)
    recorded: dict[str, Committed] = {}
    drawn = 0  # ids are first used in their time order, as a client's new_id gives them
    with _store_with_failing_batches(codec) as (store, run):
        for batch, fails in steps:
            appends = []
            for stream, offset, pick in batch:
                number = min(pick, drawn)
                drawn = max(drawn, number + 1)
                command_id = _COMMAND_IDS[number]
                appends.append(
                    msgspec.structs.replace(
                        _append_to(stream, max(0, heads[stream] + offset)),
                        command_id=command_id,
                        fingerprint=command_id.encode(),
                    )
                )
            results = run(appends, fails)
            if results is None:
                continue
            for append, result in zip(appends, results, strict=True):
                earlier = recorded.get(append.command_id)
                if earlier is not None:
                    assert result == msgspec.structs.replace(earlier, duplicate=True)
                elif append.expected_version == heads[append.stream_id]:
                    assert isinstance(result, Committed), result
                    assert not result.duplicate
                    heads[append.stream_id] += 1
                    recorded[append.command_id] = result
                else:
                    assert isinstance(result, ConcurrencyConflict), result
        for command_id, result in recorded.items():
            found = store.lookup_command(command_id)
            assert found is not None
            assert (found.stream_id, found.last_position) == (
                result.stream_id,
                result.last_position,
            )
