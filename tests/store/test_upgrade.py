"""The upgrade of data directories whose streams were keyed by id alone (store._upgrade).

``fixtures/old_layout.tar.gz`` was written by the code of that layout (see
``fixtures/make_old_layout.py``): 20 orders with snapshots, two counters, and ``order-07``, a
stream that an order and a counter shared (the old bug). Smaller cases are written here
directly in the old layout, byte by byte.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Final

import lmdb
import msgspec
import pytest
from engine_kit import COUNTER, TIMEOUT, Increment, Incremented
from layout_kit import bare_tables, index_entries, table, upgrade_some
from structlog.testing import capture_logs

from actors import Engine
from domain.errors import EngineError
from domain.orders import ORDERS, AddOrderItem, OrderItemAdded
from store import Codec, EventStore
from store._upgrade import LAYOUT, upgrade_layout
from views.orders import GetOrderById

FIXTURE: Final = pathlib.Path(__file__).with_name("fixtures") / "old_layout.tar.gz"
MIXED: Final = "order-07"  # an order's stream that a counter extended, in the old layout


@pytest.fixture
def old_dir(tmp_path: pathlib.Path) -> pathlib.Path:
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


@contextmanager
def open_old(path: pathlib.Path) -> Iterator[Engine]:
    engine = Engine.open(path, durability="async", deciders=[ORDERS, COUNTER], snapshot_every=2)
    try:
        yield engine
    finally:
        engine.close()


def builtins(value: Any) -> Any:
    """``value`` as expected.json holds it (JSON types)."""
    return json.loads(msgspec.json.encode(value))


def assert_reads_back(engine: Engine, expected: dict[str, Any]) -> None:
    """Every stream, snapshot and order reads back as the old code read it."""
    store = engine.store
    assert store.head() == expected["head"]
    for stream_id, events in expected["streams"].items():
        stream_type = events[0]["stream_type"]  # a mixed stream is kept under its first type
        stream = store.read_stream(stream_id, stream_type=stream_type)
        assert [builtins(recorded.as_dict()) for recorded in stream] == events, stream_id
        assert store.stream_version(stream_id, stream_type=stream_type) == len(events)
        snapshot = store.load_snapshot(stream_id, stream_type=stream_type)
        if stream_id == MIXED:  # it may hold either type's state: dropped, replayed instead
            assert snapshot is None
        elif stream_id in expected["snapshots"]:
            assert snapshot is not None
            assert snapshot.version == expected["snapshots"][stream_id]
        else:
            assert snapshot is None, stream_id
    assert engine.wait_for_views(timeout=TIMEOUT)
    for order_id, order in expected["orders"].items():
        assert builtins(engine.query(GetOrderById(order_id))) == order, order_id


def test_a_directory_of_the_old_layout_opens_and_reads_back_identically(
    old_dir: pathlib.Path, expected: dict[str, Any]
) -> None:
    with capture_logs() as logs, open_old(old_dir) as engine:
        assert_reads_back(engine, expected)
        # The counter that shared the order's id starts on a stream of its own.
        assert engine.store.stream_version(MIXED, stream_type="counter") == 0
    [rekeyed] = [entry for entry in logs if entry["event"] == "streams_rekeyed"]
    assert rekeyed["log_level"] == "info"
    assert rekeyed["streams"] == len(expected["streams"])
    assert rekeyed["events"] == expected["head"]
    assert rekeyed["seconds"] < 5
    [mixed] = [entry for entry in logs if entry["event"] == "mixed_stream_kept_whole"]
    assert mixed["log_level"] == "warning"
    assert (mixed["stream_id"], mixed["types"], mixed["kept"]) == (
        MIXED,
        ["order", "counter"],
        "order",
    )


def test_commands_on_upgraded_aggregates_continue_at_their_versions(
    old_dir: pathlib.Path, expected: dict[str, Any]
) -> None:
    streams = expected["streams"]
    pending = [
        order_id
        for order_id, order in expected["orders"].items()
        if order["status"] == "pending" and order_id != MIXED
    ]
    with open_old(old_dir) as engine:
        for order_id in pending:  # loaded from a snapshot (most) plus the tail of the log
            before = len(streams[order_id])
            result = engine.execute(
                AddOrderItem(
                    order_id=order_id,
                    product_id="extra",
                    quantity=1,
                    price=Decimal("1.00"),
                    expected_version=before,
                ),
                timeout=TIMEOUT,
            )
            assert result.version == before + 1
            order = engine.query(GetOrderById(order_id), after=result.position)
            assert order is not None
            assert order.item_count == expected["orders"][order_id]["item_count"] + 1
        # counter-1: +2, +3, reset (a snapshot at version 2, then the tail).
        counter = engine.execute(
            Increment(counter_id="counter-1", by=4, expected_version=3), timeout=TIMEOUT
        )
        assert counter.version == 4
        # The mixed stream stays the order's (4 events); the counter of that id starts anew.
        order = engine.execute(
            AddOrderItem(
                order_id=MIXED,
                product_id="extra",
                quantity=1,
                price=Decimal("1.00"),
                expected_version=4,
            ),
            timeout=TIMEOUT,
        )
        assert order.version == 5
        fresh = engine.execute(Increment(counter_id=MIXED, by=1), timeout=TIMEOUT)
        assert fresh.version == 1
        # A command re-sent after the upgrade still gets its original answer.
        head = engine.store.head()
        again = engine.execute(
            Increment(counter_id="counter-2", by=1, command_id="counter-2-by-1"), timeout=TIMEOUT
        )
        [original] = streams["counter-2"]
        assert (again.version, again.position) == (1, original["position"])
        assert [builtins(event) for event in again.events] == [original["event"]]
        assert engine.store.head() == head
    # Passivated and reopened, everything still loads at those versions.
    with open_old(old_dir) as engine:
        state = engine.execute(
            Increment(counter_id="counter-1", by=1, expected_version=4), timeout=TIMEOUT
        )
        assert state.version == 5
        engine.execute(Increment(counter_id=MIXED, by=1, expected_version=1), timeout=TIMEOUT)
        mixed = engine.store.read_stream(MIXED, stream_type="counter")
        assert [event.event for event in mixed] == [Incremented(counter_id=MIXED, by=1)] * 2


def data_digest(path: pathlib.Path) -> str:
    return hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()


def test_reopening_an_upgraded_directory_is_a_no_op(old_dir: pathlib.Path) -> None:
    codec = Codec([*ORDERS.event_types, *COUNTER.event_types])
    with EventStore.open(old_dir, codec=codec):
        pass
    before = data_digest(old_dir)
    with capture_logs() as logs, EventStore.open(old_dir, codec=codec) as store:
        assert upgrade_layout(store, store._dbs, codec) is None
    assert not [entry for entry in logs if entry["event"] == "streams_rekeyed"]
    assert data_digest(old_dir) == before


def test_an_upgrade_interrupted_after_any_transaction_finishes_at_the_next_open(
    old_dir: pathlib.Path, expected: dict[str, Any]
) -> None:
    codec = Codec([*ORDERS.event_types, *COUNTER.event_types])
    # Three index entries per transaction: most streams are split over two or more; every
    # "process" does one transaction and stops, the last ones are left to the engine.
    first = upgrade_some(old_dir, codec, entries=3, batches=1)
    assert (first.done, first.resumed) == (False, False)
    reports = [upgrade_some(old_dir, codec, entries=3, batches=1) for _ in range(20)]
    assert all(report.resumed and not report.done for report in reports)
    assert sum(report.streams for report in [first, *reports]) < len(expected["streams"])
    with capture_logs() as logs, open_old(old_dir) as engine:
        assert_reads_back(engine, expected)
    [rekeyed] = [entry for entry in logs if entry["event"] == "streams_rekeyed"]
    assert rekeyed["resumed"] is True
    moved = sum(report.events for report in [first, *reports]) + rekeyed["events"]
    assert moved == expected["head"]  # each index entry was moved exactly once


# ---------------------------------------------------------------- old layouts written here


def added(order_id: str) -> OrderItemAdded:
    return OrderItemAdded(order_id=order_id, product_id="p", quantity=1, price=Decimal("1.00"))


def write_old_layout(
    path: pathlib.Path,
    codec: Codec,
    streams: list[tuple[str, list[str]]],
    snapshots: tuple[str, ...] = (),
) -> None:
    """Write streams (id, the type of each event) in the old layout: keys of the id alone."""
    env = lmdb.open(str(path), max_dbs=16, map_size=2**22)
    with env.begin(write=True) as txn:
        log_db, index, heads, snaps = (
            env.open_db(name, txn=txn) for name in (b"log", b"streams", b"heads", b"snapshots")
        )
        position = 0
        for stream_id, types in streams:
            key = stream_id.encode()
            for version, stream_type in enumerate(types, start=1):
                position += 1
                record = codec.encode_record(
                    position, stream_id, stream_type, version, added(stream_id), 1, ""
                )
                txn.put(position.to_bytes(8, "big"), record, db=log_db)
                txn.put(
                    key + b"\x00" + version.to_bytes(8, "big"),
                    position.to_bytes(8, "big"),
                    db=index,
                )
            txn.put(key, len(types).to_bytes(8, "big"), db=heads)
        for stream_id in snapshots:
            txn.put(stream_id.encode(), msgspec.msgpack.encode((1, 1, b"state")), db=snaps)
    env.close()


def test_a_long_stream_is_rekeyed_over_several_transactions_and_a_late_second_type_is_found(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    path = tmp_path / "data"
    write_old_layout(
        path,
        codec,
        [("a", ["order"] * 3), ("long", ["order"] * 6 + ["counter"] * 4), ("z", ["order"])],
        snapshots=("a", "long"),
    )
    with capture_logs() as logs:
        reports = [upgrade_some(path, codec, entries=2, batches=1) for _ in range(4)]
        with EventStore.open(path, codec=codec) as store:
            assert [r.version for r in store.read_stream("long", stream_type="order")] == list(
                range(1, 11)
            )
            assert store.read_stream("long", stream_type="counter") == []
            assert store.stream_version("z", stream_type="order") == 1
            assert store.load_snapshot("a", stream_type="order") is not None
            assert store.load_snapshot("long", stream_type="order") is None
    assert [report.done for report in reports] == [False] * 4
    warnings = [entry for entry in logs if entry["event"] == "mixed_stream_kept_whole"]
    assert [(w["stream_id"], w["types"]) for w in warnings] == [("long", ["order", "counter"])]
    assert sorted(table(path, "heads")) == [b"order\x00a", b"order\x00long", b"order\x00z"]
    assert table(path, "streams") == {}
    packed = index_entries(path)
    assert len(packed) == 14
    assert all(key.startswith(b"order\x00") for key, _ in packed)


def test_a_stream_whose_new_key_would_be_too_long_stays_under_its_old_key(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    path = tmp_path / "data"
    long_id = "x" * 499  # accepted by the old layout (<= 500 bytes); 6 + 499 > 502 now
    write_old_layout(path, codec, [(long_id, ["order"] * 2), ("b", ["order"])])
    with capture_logs() as logs, EventStore.open(path, codec=codec) as store:
        assert store.stream_version("b", stream_type="order") == 1
        assert [r.stream_id for b in store.read_all() for r in b] == [long_id] * 2 + ["b"]
    [warning] = [entry for entry in logs if entry["event"] == "stream_not_rekeyed"]
    assert warning["stream_id"] == long_id
    assert "the limit is 496" in warning["reason"]
    assert sorted(table(path, "heads")) == [b"order\x00b", long_id.encode()]


def test_old_snapshots_of_no_stream_and_heads_at_version_zero_are_dropped(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    path = tmp_path / "data"
    write_old_layout(path, codec, [("a", ["order"])], snapshots=("a", "ghost"))
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"empty", (0).to_bytes(8, "big"), db=env.open_db(b"heads", txn=txn))
    env.close()
    with capture_logs() as logs, EventStore.open(path, codec=codec):
        pass
    assert sorted(table(path, "heads")) == [b"order\x00a"]
    assert sorted(table(path, "snapshots")) == [b"order\x00a"]
    [rekeyed] = [entry for entry in logs if entry["event"] == "streams_rekeyed"]
    assert (rekeyed["streams"], rekeyed["orphan_snapshots"]) == (1, 1)


def test_a_new_directory_starts_at_the_current_layout_quietly(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    with capture_logs() as logs, EventStore.open(tmp_path / "data", codec=codec):
        pass
    assert table(tmp_path / "data", "meta") == {b"layout": LAYOUT.to_bytes(8, "big")}
    assert not [entry for entry in logs if entry["event"] == "streams_rekeyed"]


def test_a_directory_of_a_newer_layout_is_refused(tmp_path: pathlib.Path, codec: Codec) -> None:
    path = tmp_path / "data"
    with EventStore.open(path, codec=codec):
        pass
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"layout", (LAYOUT + 1).to_bytes(8, "big"), db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(EngineError, match="newer than this code"):
        EventStore.open(path, codec=codec)
    with bare_tables(path):  # the failed open released the directory
        pass
