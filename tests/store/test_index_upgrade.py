"""The packed stream index (layout 3) and the upgrade of layout-2 directories to it.

``fixtures/layout2.tar.gz`` was written by the last code of layout 2 (see
``fixtures/make_layout2.py``): 20 orders with snapshots, a counter sharing an order's id, and a
counter of 4,201 events, long enough for its tail to be read by seeking.
"""

from __future__ import annotations

import json
import pathlib
import tarfile
from decimal import Decimal
from typing import Any, Final

import msgspec
import pytest
from engine_kit import COUNTER, TIMEOUT, Increment
from layout_kit import index_entries, table, upgrade_some
from structlog.testing import capture_logs

from actors import Engine
from domain.errors import CorruptLog, InvalidCommand
from domain.orders import ORDERS, AddOrderItem, OrderItemAdded
from store import Codec, EventStore, StreamAppend
from store._log import MAX_STREAM_VERSION, stream_key
from store._upgrade import LAYOUT
from views.orders import GetOrderById

FIXTURE: Final = pathlib.Path(__file__).with_name("fixtures") / "layout2.tar.gz"


@pytest.fixture
def layout2_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extract("data.mdb", tmp_path / "data", filter="data")
    return tmp_path / "data"


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    with tarfile.open(FIXTURE) as tar:
        member = tar.extractfile("expected.json")
        assert member is not None
        answer: dict[str, Any] = json.load(member)
    return answer


def builtins(value: Any) -> Any:
    return json.loads(msgspec.json.encode(value))


def open_engine(path: pathlib.Path) -> Engine:
    return Engine.open(path, durability="async", deciders=[ORDERS, COUNTER], snapshot_every=2)


def assert_reads_back(engine: Engine, expected: dict[str, Any]) -> None:
    """Every stream, the long counter and every order read back as the layout-2 code read them."""
    store = engine.store
    assert store.head() == expected["head"]
    for name, events in expected["streams"].items():
        stream_type, stream_id = name.split("/", 1)
        stream = store.read_stream(stream_id, stream_type=stream_type)
        assert [builtins(recorded.as_dict()) for recorded in stream] == events, name
        assert store.stream_version(stream_id, stream_type=stream_type) == len(events)
        # A tail read too: from the middle of the stream.
        middle = len(events) // 2 + 1
        tail = store.read_stream(stream_id, middle, stream_type=stream_type)
        assert [builtins(r.as_dict()) for r in tail] == events[middle - 1 :], name
    long = expected["long"]
    assert store.stream_version("long", stream_type="counter") == long["events"]
    whole = store.read_stream("long", stream_type="counter")
    assert [r.version for r in whole] == list(range(1, long["events"] + 1))
    assert builtins(whole[-1].as_dict()) == long["last"]
    sought = store.read_stream("long", long["events"] - 5, stream_type="counter")  # seeks
    assert [builtins(r.as_dict()) for r in sought] == [builtins(r.as_dict()) for r in whole[-6:]]
    assert engine.wait_for_views(timeout=TIMEOUT)
    for order_id, order in expected["orders"].items():
        assert builtins(engine.query(GetOrderById(order_id))) == order, order_id


def test_a_layout_2_directory_opens_packed_and_reads_back_identically(
    layout2_dir: pathlib.Path, expected: dict[str, Any]
) -> None:
    with capture_logs() as logs, open_engine(layout2_dir) as engine:
        assert_reads_back(engine, expected)
    [packed] = [entry for entry in logs if entry["event"] == "stream_index_packed"]
    assert packed["entries"] == expected["head"]  # one index row per event, each moved once
    assert table(layout2_dir, "streams") == {}
    assert len(index_entries(layout2_dir)) == expected["head"]
    assert (
        table(layout2_dir, "meta")[b"layout"] == LAYOUT.to_bytes(8, "big") == (4).to_bytes(8, "big")
    )


def test_retries_and_new_commands_continue_after_the_upgrade(
    layout2_dir: pathlib.Path, expected: dict[str, Any]
) -> None:
    with open_engine(layout2_dir) as engine:
        # A retry of a command decided by the layout-2 code returns its original result.
        retry = engine.execute(
            AddOrderItem(
                order_id="order-02",
                product_id="mug",
                quantity=1,
                price=Decimal("9.50"),
                command_id="order-02-cmd-2",
            ),
            timeout=TIMEOUT,
        )
        assert [retry.aggregate_id, retry.version, retry.position] == expected["results"][
            "order-02-cmd-2"
        ]
        long = engine.execute(Increment(counter_id="long", by=1), timeout=TIMEOUT)
        assert long.version == expected["long"]["events"] + 1
        assert long.position == expected["head"] + 1
    with open_engine(layout2_dir) as engine:
        stream = engine.store.read_stream("long", long.version - 1, stream_type="counter")
        assert [r.version for r in stream] == [long.version - 1, long.version]


def test_a_packing_interrupted_after_any_transaction_finishes_at_the_next_open(
    layout2_dir: pathlib.Path, expected: dict[str, Any]
) -> None:
    codec = Codec([*ORDERS.event_types, *COUNTER.event_types])
    first = upgrade_some(layout2_dir, codec, entries=1000, batches=1)
    assert (first.done, first.resumed, first.packed) == (False, False, 1000)
    again = upgrade_some(layout2_dir, codec, entries=1000, batches=2)
    assert (again.done, again.resumed, again.packed) == (False, True, 2000)
    with capture_logs() as logs, open_engine(layout2_dir) as engine:
        assert_reads_back(engine, expected)
    [packed] = [entry for entry in logs if entry["event"] == "stream_index_packed"]
    assert packed["resumed"] is True
    assert 3000 + packed["entries"] == expected["head"]  # every row moved exactly once
    assert len(index_entries(layout2_dir)) == expected["head"]


# ---------------------------------------------------------------- the packed index itself


def added(order_id: str, count: int) -> list[OrderItemAdded]:
    return [
        OrderItemAdded(order_id=order_id, product_id=f"p{i}", quantity=1, price=Decimal("1.00"))
        for i in range(count)
    ]


def append(stream_id: str, expected_version: int, count: int) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        stream_type="order",
        expected_version=expected_version,
        events=added(stream_id, count),
    )


@pytest.mark.parametrize("start", [1, 2, 4100, 4190, 4200, 4201])
def test_a_long_stream_reads_from_any_version_by_seek_or_by_copy(
    store: EventStore, start: int
) -> None:
    store.append_batch([append("short", 0, 3), append("long", 0, 4000)])
    store.append_batch([append("long", 4000, 200), append("short", 3, 1)])
    stream = store.read_stream("long", start, stream_type="order")
    assert [r.version for r in stream] == list(range(start, 4201))
    assert all(r.stream_id == "long" for r in stream)
    positions = [r.position for r in stream]
    assert positions == sorted(positions)
    assert [r.version for r in store.read_stream("short", 2, stream_type="order")] == [2, 3, 4]


def test_a_missing_index_entry_is_reported_as_corrupt_not_skipped(store: EventStore) -> None:
    store.append_batch([append("a", 0, 3)])
    key = stream_key("order", "a")

    def drop_version_2(txn: Any) -> None:
        index = store._dbs["index"]
        cursor = txn.cursor(db=index)
        assert cursor.set_range_dup(key, (2).to_bytes(4, "big"))
        cursor.delete()

    store.write(drop_version_2)
    with pytest.raises(CorruptLog, match=r"does not hold versions 1\.\.3"):
        store.read_stream("a", stream_type="order")


def test_a_stream_cannot_grow_past_the_index_version_limit(store: EventStore) -> None:
    key = stream_key("order", "full")
    store.write(
        lambda txn: txn.put(key, MAX_STREAM_VERSION.to_bytes(8, "big"), db=store._dbs["heads"])
    )
    [result] = store.append_batch([append("full", MAX_STREAM_VERSION, 1)])
    assert isinstance(result, InvalidCommand)
    assert result.rule == "stream_too_long"
    assert store.head() == 0  # nothing written
