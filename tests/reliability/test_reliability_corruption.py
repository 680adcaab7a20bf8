"""Bad records and poison events: loud stops naming the position, opt-in skips that are counted,
and a view's poison event parked without harming the other views or the write side."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest
from reliability_kit import STEPS, all_commands, command_for
from structlog.testing import capture_logs
from waiting import wait_until

from actors import CorruptLog, Engine
from domain.orders import ORDERS
from store import Codec, CommandRecord, EventStore, RecordedEvent, StreamAppend
from views import Storage
from views._memory import MemoryView
from views.orders import GetOrderById, GetOrderStats, OrderDetailsModel, order_views

ORDERS_WRITTEN = 8
MEMORY_VIEWS = ("order_search", "order_stats")  # replayed from 0 at open: they meet the record
BAD_ORDER = "bad-t0-o2"  # its stream holds the bad record


class GiftWrapped(msgspec.Struct, frozen=True, kw_only=True, tag="GiftWrapped"):
    """An event type the engine does not know (written by a newer program, say)."""

    order_id: str


def write_log(path: Path) -> None:
    with Engine.open(path) as engine:
        for command in all_commands("bad", ORDERS_WRITTEN):
            engine.execute(command)


def corrupt_bytes(path: Path) -> int:
    """Overwrite the bytes of the bad order's creating record in place, via raw LMDB."""
    write_log(path)
    with EventStore.open(path, codec=Codec(ORDERS.event_types)) as store:
        record = store.lookup_command("bad.0.2.0")
        assert record is not None
        position = record.first_position
    env = lmdb.open(str(path), max_dbs=256, subdir=True)
    try:
        log_db = env.open_db(b"log")  # the log table's name, from store/_store.py (_TABLES)
        with env.begin(write=True) as txn:
            key = position.to_bytes(8, "big")
            original = txn.get(key, db=log_db)
            assert original is not None
            value = bytearray(original)
            value[1:9] = b"\xc1" * 8  # 0xc1 is never valid msgpack
            txn.put(key, bytes(value), db=log_db)
    finally:
        env.close()
    # The memory views must meet the bad record again: without their snapshots (taken at close,
    # past it) they replay the log from 0 at the next open.
    shutil.rmtree(path / "views" / "snapshots")
    return position


def unknown_tag(path: Path) -> int:
    """Append an event of a type the engine does not know to the bad order's stream."""
    write_log(path)
    codec = Codec(ORDERS.event_types)
    codec.register(GiftWrapped)
    with EventStore.open(path, codec=codec) as store:
        (committed,) = store.append_batch(
            [
                StreamAppend(
                    stream_id=BAD_ORDER,
                    stream_type="order",
                    expected_version=store.stream_version(BAD_ORDER, stream_type="order"),
                    events=[GiftWrapped(order_id=BAD_ORDER)],
                )
            ]
        )
        assert not isinstance(committed, Exception)
        return committed.last_position


DAMAGES = [corrupt_bytes, unknown_tag]
ALL_VIEWS = ("order_details", "customer_orders", *MEMORY_VIEWS)


@pytest.mark.parametrize(
    ("damage", "stalled_views"),
    [
        # Below the LMDB views' checkpoints: only the views replayed at open meet it.
        (corrupt_bytes, MEMORY_VIEWS),
        # Appended after the last run: every view meets it.
        (unknown_tag, ALL_VIEWS),
    ],
)
def test_reading_stops_at_a_bad_record_with_corrupt_log_naming_it_and_status_shows_it(
    tmp_path: Path, damage: Callable[[Path], int], stalled_views: tuple[str, ...]
) -> None:
    path = tmp_path / "data"
    bad = damage(path)
    with capture_logs() as logs, Engine.open(path) as engine:
        with pytest.raises(CorruptLog) as caught:
            for _ in engine.store.read_all():
                pass
        assert caught.value.position == bad
        assert f"position {bad}" in str(caught.value)

        def stalled() -> bool:
            views = engine.status().views
            return all(views[name].error for name in stalled_views)

        assert wait_until(stalled)
        for name in stalled_views:
            view = engine.status().views[name]
            assert f"position {bad}" in view.error
            assert view.position == bad - 1
        assert not engine.wait_for_views(timeout=0.2)
        # The write side keeps going on the other streams.
        assert engine.execute(command_for("new.0.0.0")).position == engine.store.head()
    stalls = [entry for entry in logs if entry["event"] == "view_stalled"]
    assert {entry["position"] for entry in stalls} == {bad}
    assert {entry["view"] for entry in stalls} == set(stalled_views)


@pytest.mark.parametrize("damage", DAMAGES)
def test_views_that_opt_in_skip_a_bad_record_and_count_it(
    tmp_path: Path, damage: Callable[[Path], int]
) -> None:
    path = tmp_path / "data"
    damage(path)
    with Engine.open(path, skip_unknown_events=True) as engine:
        assert engine.wait_for_views(timeout=10)
        views = engine.status().views
        for name in MEMORY_VIEWS:
            assert views[name].skipped == 1
            assert views[name].error == ""
        stats = engine.query(GetOrderStats())
        assert stats.total_orders in {ORDERS_WRITTEN - 1, ORDERS_WRITTEN}


def lookup_or_error(engine: Engine, command_id: str) -> CommandRecord | CorruptLog | None:
    """The command's idempotency record, or the CorruptLog its lookup raised."""
    try:
        return engine.store.lookup_command(command_id)
    except CorruptLog as error:
        return error


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_command_on_a_stream_with_a_bad_record_fails_with_corrupt_log_at_once(
    tmp_path: Path, damage: Callable[[Path], int]
) -> None:
    path = tmp_path / "data"
    bad = damage(path)
    with Engine.open(path) as engine:
        # A new command must load the stream, and meets the bad record.
        with pytest.raises(CorruptLog) as caught:
            engine.execute(command_for("bad.0.2.9"), timeout=5)
        assert caught.value.position == bad
        # A retry of an already recorded command reads only that command's own records: it
        # fails with CorruptLog if the bad record is one of them, and gets its original result
        # if they are intact, wherever the bad record sits in the stream.
        # (The idempotency row of a command names only its positions: the stream and version
        # come from the envelope of its last event, so the lookup itself fails when that is bad.)
        for cid in (f"bad.0.2.{step}" for step in range(STEPS)):
            record = lookup_or_error(engine, cid)
            if isinstance(record, CorruptLog):
                assert record.position == bad
                with pytest.raises(CorruptLog) as caught:
                    engine.execute(command_for(cid), timeout=5)
                assert caught.value.position == bad
                continue
            assert record is not None
            if record.first_position <= bad <= record.last_position:
                with pytest.raises(CorruptLog) as caught:
                    engine.execute(command_for(cid), timeout=5)
                assert caught.value.position == bad
            else:
                assert engine.execute(command_for(cid), timeout=5).position == record.last_position
        # Other streams are served as usual.
        assert engine.execute(command_for("bad.0.9.0")).version == 1


class PoisonModel(OrderDetailsModel):
    """The real order-details read model, raising for one order while ``armed``."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison
        self.armed = True

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        if self.armed and getattr(record.event, "order_id", None) == self.poison:
            raise RuntimeError(f"poison: cannot handle {self.poison}")
        super().apply(storage, record)


def test_a_poison_event_is_parked_and_the_other_views_and_writers_go_on(tmp_path: Path) -> None:
    poison = "poison-t0-o3"
    model = PoisonModel(poison)
    views: list[Any] = order_views(None)
    views[0] = MemoryView(model)
    with capture_logs() as logs, Engine.open(tmp_path / "data", views=views) as engine:
        results = [engine.execute(command) for command in all_commands("poison", 6)]
        assert [r.position for r in results] == list(range(1, 6 * STEPS + 1))
        assert engine.wait_for_views(timeout=10)
        parked = engine.parked("order_details")
        poisoned = [r.position for r in results if r.aggregate_id == poison]
        assert [p.position for p in parked] == poisoned
        assert all("poison" in p.error for p in parked)
        status = engine.status()
        assert status.views["order_details"].parked == len(poisoned)
        assert status.parked_events == len(poisoned)
        assert all(status.views[name].parked == 0 for name in MEMORY_VIEWS)
        assert engine.query(GetOrderById(poison)) is None
        assert engine.query(GetOrderById("poison-t0-o2")) is not None
        assert engine.query(GetOrderStats()).total_orders == 6
        # Fixed: each parked event applies again, in order, and the view is whole.
        model.armed = False
        assert all(engine.retry_parked("order_details", p) for p in poisoned)
        assert engine.parked() == []
        fixed = engine.query(GetOrderById(poison))
        assert fixed is not None
        assert fixed.status == "shipped"  # order 3 ends with ShipOrder
    parked_logs = [entry for entry in logs if entry["event"] == "event_parked"]
    assert [entry["position"] for entry in parked_logs] == poisoned
