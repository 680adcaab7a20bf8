from __future__ import annotations

import pathlib
from decimal import Decimal

from domain.orders import OrderItemAdded
from store import Codec, EventStore, Snapshot, StreamAppend


def test_a_missing_snapshot_is_none(store: EventStore) -> None:
    assert store.load_snapshot("a", stream_type="order") is None


def test_the_latest_snapshot_wins_and_an_older_one_never_replaces_it(store: EventStore) -> None:
    store.save_snapshot(Snapshot("a", "order", 5, 1, b"five"))
    store.save_snapshot(Snapshot("a", "order", 9, 2, b"nine"))
    store.save_snapshot(Snapshot("a", "order", 7, 2, b"seven"))
    assert store.load_snapshot("a", stream_type="order") == Snapshot("a", "order", 9, 2, b"nine")


def test_a_snapshot_in_an_append_is_written_with_its_events_and_survives_reopen(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    event = OrderItemAdded(order_id="a", product_id="p", quantity=1, price=Decimal("1.00"))
    with EventStore.open(tmp_path, codec=codec) as store:
        store.append_batch(
            [
                StreamAppend(
                    stream_id="a",
                    stream_type="order",
                    expected_version=0,
                    events=[event, event],
                    snapshot=b"state-at-2",
                    snapshot_schema=3,
                )
            ]
        )
    with EventStore.open(tmp_path, codec=codec) as store:
        assert store.load_snapshot("a", stream_type="order") == Snapshot(
            "a", "order", 2, 3, b"state-at-2"
        )


def test_two_stream_types_with_one_id_keep_their_own_snapshots(store: EventStore) -> None:
    store.save_snapshot(Snapshot("a", "order", 4, 1, b"order-state"))
    store.save_snapshot(Snapshot("a", "counter", 2, 1, b"counter-state"))
    order = store.load_snapshot("a", stream_type="order")
    counter = store.load_snapshot("a", stream_type="counter")
    assert order == Snapshot("a", "order", 4, 1, b"order-state")
    assert counter == Snapshot("a", "counter", 2, 1, b"counter-state")
    assert store.load_snapshot("a", stream_type="other") is None
