"""Idempotency retention in the store: pruning by age or count, in bounded batches, resumable."""

from __future__ import annotations

import pathlib
from datetime import timedelta
from decimal import Decimal

import pytest

from domain.orders import OrderItemAdded
from store import Codec, EventStore, RecentCommands, StreamAppend
from store._retention import normalize_window

SECOND = 1_000_000_000
BASE = 1_000 * SECOND  # timestamp 0 would mean "now" to the store


def at(second: int) -> int:
    return BASE + second * SECOND


EVENT = OrderItemAdded(order_id="a", product_id="p", quantity=1, price=Decimal("1.00"))


def append(store: EventStore, count: int, *, start: int = 0, events: int = 1) -> None:
    """Append ``count`` commands ``c<start>``.. on their own streams, the i-th at second i."""
    store.append_batch(
        [
            StreamAppend(
                stream_id=f"s{index}",
                stream_type="order",
                expected_version=0,
                events=[EVENT] * events,
                command_id=f"c{index}",
                fingerprint=b"f",
                timestamp=at(index),
            )
            for index in range(start, start + count)
        ]
    )


def kept(store: EventStore, count: int) -> list[bool]:
    return [store.lookup_command(f"c{index}") is not None for index in range(count)]


def test_pruning_by_age_forgets_only_commands_older_than_the_cutoff(store: EventStore) -> None:
    append(store, 10)
    result = store.prune_commands(cutoff_ns=at(4))
    assert (result.cursor, result.pruned, result.more) == (4, 4, False)
    assert kept(store, 10) == [False] * 4 + [True] * 6
    stats = store.idempotency_stats()
    assert (stats.entries, stats.oldest, stats.cursor) == (6, at(4), 4)


def test_pruning_walks_at_most_limit_positions_per_transaction(store: EventStore) -> None:
    append(store, 25, events=2)  # 50 positions
    results = []
    while True:
        result = store.prune_commands(cutoff_ns=at(100), limit=8)
        results.append(result)
        if not result.more:
            break
    # 8 positions per batch = 4 two-event commands; the last batch finds the head.
    assert [r.pruned for r in results] == [4, 4, 4, 4, 4, 4, 1]
    assert [r.cursor for r in results] == [8, 16, 24, 32, 40, 48, 50]
    assert store.idempotency_stats().entries == 0


def test_the_cursor_survives_a_reopen_and_pruning_resumes_there(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    with EventStore.open(tmp_path, codec=codec, durability="async") as store:
        append(store, 10)
        assert store.prune_commands(cutoff_ns=at(100), limit=3).cursor == 3
    with EventStore.open(tmp_path, codec=codec, durability="async") as store:
        assert store.idempotency_stats().cursor == 3
        result = store.prune_commands(cutoff_ns=at(100), limit=3)
        assert (result.cursor, result.pruned) == (6, 3)
        assert kept(store, 10) == [False] * 6 + [True] * 4


def test_a_count_window_keeps_the_most_recent_commands(store: EventStore) -> None:
    append(store, 10, events=3)
    result = store.prune_commands(keep=4)
    assert (result.pruned, result.more) == (6, False)
    assert kept(store, 10) == [False] * 6 + [True] * 4
    assert store.prune_commands(keep=4).pruned == 0  # nothing beyond the window
    assert store.prune_commands(keep=20).pruned == 0  # a wider window prunes nothing


def test_an_id_used_again_after_pruning_keeps_its_new_row(store: EventStore) -> None:
    # c0 has three events: the batch stops after the first, c0 is forgotten, and a new command
    # under the same id commits before the walk reaches c0's other events.
    append(store, 1, events=3)
    assert store.prune_commands(cutoff_ns=at(100), limit=1).pruned == 1
    store.append_batch(
        [
            StreamAppend(
                stream_id="t",
                stream_type="order",
                expected_version=0,
                events=[EVENT],
                command_id="c0",
                fingerprint=b"g",
                timestamp=at(200),
            )
        ]
    )
    assert store.prune_commands(cutoff_ns=at(100)).pruned == 0
    record = store.lookup_command("c0")
    assert record is not None
    assert (record.stream_id, record.fingerprint) == ("t", b"g")


def test_without_a_window_nothing_is_pruned(store: EventStore) -> None:
    append(store, 3)
    assert store.prune_commands().pruned == 0
    stats = store.idempotency_stats()
    assert (stats.entries, stats.oldest, stats.cursor) == (3, at(0), 0)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (None, None),
        (60, 60.0),
        (1.5, 1.5),
        (timedelta(days=7), 7 * 86400.0),
        (RecentCommands(5), RecentCommands(5)),
    ],
)
def test_a_window_is_seconds_a_count_or_none(window: object, expected: object) -> None:
    assert normalize_window(window) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [-1, float("nan"), float("inf"), RecentCommands(-1)])
def test_a_window_out_of_range_is_refused(window: object) -> None:
    with pytest.raises(ValueError, match=r"idempotency_window|RecentCommands"):
        normalize_window(window)  # type: ignore[arg-type]


def test_a_window_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="RecentCommands"):
        normalize_window("7 days")  # type: ignore[arg-type]
