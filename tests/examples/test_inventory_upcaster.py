"""Schema evolution: a log written with ``StockReceived`` version 1 reads back as version 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from inventory_kit import BACKENDS, TIMEOUT, Backend, all_events, inventory_engine

from domain.errors import CorruptLog
from examples.inventory.levels import GetStockLevel, StockLevel
from examples.inventory.schema import (
    RECEIVED_SCHEMA,
    StockReceivedV1,
    inventory_codec,
    received_v1_to_v2,
)
from examples.inventory.stock import ReceiveStock, ReserveStock, StockReceived, StockReserved
from store import Codec, EventStore, StreamAppend


def write_v1_log(path: Path) -> None:
    """Write two version-1 ``StockReceived`` records, as the first release of the code did."""
    with EventStore.open(path, codec=Codec([StockReceivedV1]), durability="async") as store:
        store.append_batch(
            [
                StreamAppend(
                    stream_id="kettle",
                    stream_type="stock",
                    expected_version=0,
                    events=[StockReceivedV1(sku="kettle", qty=4)],
                    command_id="v1-receive-1",
                ),
                StreamAppend(
                    stream_id="kettle",
                    stream_type="stock",
                    expected_version=1,
                    events=[StockReceivedV1(sku="kettle", qty=2)],
                    command_id="v1-receive-2",
                ),
            ]
        )


def test_the_upcaster_renames_qty_and_adds_an_empty_lot() -> None:
    assert received_v1_to_v2({"sku": "kettle", "qty": 4}) == {
        "sku": "kettle",
        "quantity": 4,
        "lot": "",
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_v1_log_reads_back_as_v2_after_reopen(tmp_path: Path, backend: Backend) -> None:
    path = tmp_path / "data"
    write_v1_log(path)
    with inventory_engine(path, backend) as engine:
        records = all_events(engine.store)
        assert [(r.schema_version, r.event) for r in records] == [
            (1, StockReceived(sku="kettle", quantity=4)),
            (1, StockReceived(sku="kettle", quantity=2)),
        ]
        # The read model replayed the old records through the upcaster...
        level = engine.query(GetStockLevel("kettle"), after=2, timeout=TIMEOUT)
        assert level == StockLevel("kettle", on_hand=6, reserved=0)
        # ...and so did the aggregate: it knows the 6 units the v1 records brought.
        done = engine.execute(ReserveStock(sku="kettle", order_id="so-1", quantity=6))
        assert done.version == 3
        assert done.events == (StockReserved(sku="kettle", order_id="so-1", quantity=6),)
        # New records are written with the current schema, next to the old ones.
        engine.execute(ReceiveStock(sku="kettle", quantity=1, lot="L2"))
        assert all_events(engine.store)[-1].schema_version == RECEIVED_SCHEMA


def test_without_the_upcaster_a_v1_record_fails_loudly_naming_its_position(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    write_v1_log(path)
    codec = Codec()
    codec.register(StockReceived, schema_version=RECEIVED_SCHEMA)  # no upcaster registered
    with EventStore.open(path, codec=codec) as store, pytest.raises(CorruptLog) as raised:
        all_events(store)
    assert raised.value.position == 1


def test_the_inventory_codec_knows_every_event_of_the_example() -> None:
    codec = inventory_codec()
    assert codec.schema_version("inventory.StockReceived") == RECEIVED_SCHEMA
    assert codec.schema_version("sales.OrderPlaced") == 1
