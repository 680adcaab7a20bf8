from __future__ import annotations

import pathlib
from decimal import Decimal

from domain.orders import OrderItemAdded
from store import Codec, EventStore, Snapshot, StreamAppend


def test_a_missing_snapshot_is_none(store: EventStore) -> None:
    assert store.load_snapshot("a") is None


def test_the_latest_snapshot_wins_and_an_older_one_never_replaces_it(store: EventStore) -> None:
    store.save_snapshot(Snapshot("a", 5, 1, b"five"))
    store.save_snapshot(Snapshot("a", 9, 2, b"nine"))
    store.save_snapshot(Snapshot("a", 7, 2, b"seven"))
    assert store.load_snapshot("a") == Snapshot("a", 9, 2, b"nine")


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
        assert store.load_snapshot("a") == Snapshot("a", 2, 3, b"state-at-2")
