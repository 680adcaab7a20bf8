"""The event tail: committed events decoded once, shared by every projector, bounded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest
from engine_kit import COUNTER, Increment, Incremented, WasReset, create, open_engine

from actors import Engine
from actors._tail import CHUNK, EventTail
from domain.errors import CorruptLog
from domain.orders import ORDERS
from store import Codec, EventStore, ReadBatch, RecordedEvent, StreamAppend
from views.orders import GetCustomerOrders, GetOrderById, GetOrderStats


def _store(path: Path) -> EventStore:
    return EventStore.open(path, codec=Codec(COUNTER.event_types), durability="async")


def _fill(store: EventStore, count: int) -> list[RecordedEvent]:
    """Append ``count`` events (one per stream append) and return them as the log has them."""
    appends = [
        StreamAppend(
            stream_id=f"c-{i % 7}",
            stream_type="counter",
            expected_version=i // 7,
            events=[Incremented(counter_id=f"c-{i % 7}", by=1)],
            timestamp=1_000 + i,
        )
        for i in range(count)
    ]
    for start in range(0, count, 500):
        store.append_batch(appends[start : start + 500])
    return [event for batch in store.read_all(1, 1000) for event in batch]


def _as_tuple(record: RecordedEvent) -> tuple[Any, ...]:
    return (*msgspec.structs.astuple(record)[:8], msgspec.to_builtins(record.event))


def test_a_miss_decodes_the_whole_chunk_once_and_every_reader_shares_it(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        log = _fill(store, 3000)
        tail = EventTail(store)
        first = tail.read(5, 10)
        assert [r.position for r in first] == list(range(5, 15))
        assert tail.decoded == CHUNK  # the aligned chunk 1..1024, once
        second = tail.read(100, 2000)  # another reader further on: same chunk, no decoding
        assert [r.position for r in second] == list(range(100, CHUNK + 1))  # up to the chunk end
        assert tail.decoded == CHUNK
        last = tail.read(2 * CHUNK + 1, 5000)
        assert [r.position for r in last] == list(range(2 * CHUNK + 1, 3001))
        assert [_as_tuple(r) for r in first + second + last] == [
            _as_tuple(r) for r in log[4:14] + log[99:CHUNK] + log[2 * CHUNK :]
        ]
        assert tail.read(3001, 10) == []


def test_published_records_extend_their_chunk_and_are_served_without_decoding(
    tmp_path: Path,
) -> None:
    with _store(tmp_path) as store:
        log = _fill(store, 1500)
        tail = EventTail(store)
        tail.publish(log[:600])  # a chunk starts at position 1: kept
        tail.publish(log[600:1100])  # extends chunk 0 and starts chunk 1
        assert tail.read(1, 5000) == log[:CHUNK]
        assert tail.read(CHUNK + 1, 5000) == log[CHUNK:1100]
        assert tail.decoded == 0
        tail.publish(log[1200:1300])  # a gap (1101..1200 never published): dropped
        assert [r.position for r in tail.read(1101, 300)] == list(range(1101, 1401))
        assert tail.decoded == 1500 - CHUNK  # the chunk was decoded from the log instead


def test_the_tail_keeps_a_bounded_number_of_chunks(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        _fill(store, 5 * CHUNK)
        tail = EventTail(store, max_chunks=2)
        for chunk in range(5):
            tail.read(chunk * CHUNK + 1, 1)
        assert tail.decoded == 5 * CHUNK
        tail.read(1, 1)  # evicted long ago: decoded again
        assert tail.decoded == 6 * CHUNK
        tail.read(4 * CHUNK + 1, 1)  # still cached
        assert tail.decoded == 6 * CHUNK


def test_records_are_wanted_only_while_some_reader_is_within_what_the_tail_holds(
    tmp_path: Path,
) -> None:
    with _store(tmp_path) as store:
        log = _fill(store, 3 * CHUNK)
        tail = EventTail(store, max_chunks=2)  # holds 2,048 positions
        assert tail.wanted(10 * CHUNK)  # no reader yet: nothing to decide (the writer checks)
        slow = tail.reader()
        assert [r.position for r in slow(1, 10)] == list(range(1, 11))
        assert tail.wanted(2 * CHUNK)  # within reach of the reader at 1
        assert not tail.wanted(2 * CHUNK + 2)  # evicted before it could get there
        fast = tail.reader()
        assert [r.position for r in fast(2 * CHUNK + 1, 10)] == [
            r.position for r in log[2 * CHUNK : 2 * CHUNK + 10]
        ]
        assert tail.wanted(3 * CHUNK + 1)  # the fast reader will read it: published again
        # A reader's furthest read counts, not its last: a projector reads for each view in
        # turn, and a view far behind must not stop the records its caught-up views read.
        both = EventTail(store, max_chunks=2)
        views = both.reader()
        views(2 * CHUNK + 1, 10)  # the caught-up view
        views(1, 10)  # then the one far behind
        assert both.wanted(3 * CHUNK + 1)
        # What a reader gets is the log's either way (a skipped chunk is decoded on a miss).
        assert [_as_tuple(r) for r in slow(CHUNK + 1, CHUNK)] == [
            _as_tuple(r) for r in log[CHUNK : 2 * CHUNK]
        ]


def test_a_bad_record_is_reported_at_its_own_position_and_not_cached(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        _fill(store, 50)
        log_db = store.env.open_db(b"log", create=False)
        with store.env.begin(write=True) as txn:
            txn.put((30).to_bytes(8, "big"), b"\xc1garbage", db=log_db)
        tail = EventTail(store)
        assert [r.position for r in tail.read(5, 20)] == list(range(5, 25))  # before the bad one
        with pytest.raises(CorruptLog) as caught:
            tail.read(25, 20)
        assert caught.value.position == 30
        assert tail.decoded == 0


def test_the_writer_hands_the_projectors_exactly_what_the_log_holds(tmp_path: Path) -> None:
    with open_engine(tmp_path, views=None, deciders=[COUNTER]) as engine:
        tail = engine._read.tail
        assert tail is not None
        for i in range(300):
            engine.submit(Increment(counter_id=f"c-{i % 5}", by=i + 1)).get(timeout=10)
        assert engine.wait_for_views(timeout=10)
        assert tail.published == 300
        served = tail.read(1, 300)
        log = [event for batch in engine.store.read_all(1, 1000) for event in batch]
        assert [_as_tuple(r) for r in served] == [_as_tuple(r) for r in log]


def test_with_every_view_in_the_projection_process_the_writer_publishes_nothing(
    tmp_path: Path,
) -> None:
    # The engine's process then has no projector to read the tail: building records for it
    # would only cost the write side.
    with Engine.open(tmp_path / "data", projection="process") as engine:
        tail = engine._read.tail
        assert tail is not None
        assert tail.readers == 0
        for i in range(20):
            result = engine.execute(create(f"t-{i}"))
        assert engine.query(GetOrderById(result.aggregate_id), after=result.position) is not None
        assert tail.published == 0
    with Engine.open(tmp_path / "data") as engine:  # in-process: its projector reads it
        tail = engine._read.tail
        assert tail is not None
        assert tail.readers == 1
        engine.execute(create("t-99"))
        assert tail.published == 1


def _fill_mixed(store: EventStore, count: int) -> list[RecordedEvent]:
    """Append ``count`` events, every third a reset, and return them as the log has them."""
    events: list[msgspec.Struct] = [
        WasReset(counter_id="c") if i % 3 == 2 else Incremented(counter_id="c", by=i + 1)
        for i in range(count)
    ]
    for start in range(0, count, 500):
        chunk = events[start : start + 500]
        store.append_batch(
            [
                StreamAppend(
                    stream_id="c", stream_type="counter", expected_version=start, events=chunk
                )
            ]
        )
    return [event for batch in store.read_all(1, 5000) for event in batch]


RESET = frozenset({"test.CounterReset"})


def test_a_reader_of_some_tags_gets_theirs_only_and_knows_how_far_each_read_went(
    tmp_path: Path,
) -> None:
    with _store(tmp_path) as store:
        log = _fill_mixed(store, 1500)
        resets = [r for r in log if r.tag in RESET]
        tail = EventTail(store)
        read = tail.reader(RESET)
        first = read(1, 100)
        assert isinstance(first, ReadBatch)
        assert first.end == 100
        assert [_as_tuple(r) for r in first] == [_as_tuple(r) for r in resets if r.position <= 100]
        assert tail.decoded == len([r for r in resets if r.position <= CHUNK])  # payloads decoded
        rest = read(CHUNK + 1, 5000)
        assert isinstance(rest, ReadBatch)
        assert rest.end == 1500
        assert [r.position for r in rest] == [r.position for r in resets if r.position > CHUNK]
        # A reader of every tag (a saga) widens the tail: the sparse chunks go, and it gets all.
        everything = tail.reader(None)
        assert [_as_tuple(r) for r in everything(1, 100)] == [_as_tuple(r) for r in log[:100]]
        assert not isinstance(read(1, 100), ReadBatch)  # no gap now: a plain run of records


def test_published_records_reach_a_reader_of_some_tags_as_they_came(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        log = _fill_mixed(store, 600)
        tail = EventTail(store)
        read = tail.reader(RESET)
        tail.publish(log)  # the writer hands every record over, whatever its tag
        served = read(1, 600)
        assert served == log  # whole and consecutive: the reader skips the other tags itself
        assert tail.decoded == 0


def test_a_catch_up_decodes_only_the_payloads_of_the_tags_its_views_handle(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    probes = [GetOrderById("o-7"), GetCustomerOrders("alice"), GetOrderStats()]
    with Engine.open(path, deciders=[ORDERS, COUNTER], durability="async") as engine:
        for i in range(40):
            engine.submit(create(f"o-{i}"))
            engine.submit(Increment(counter_id=f"c-{i % 3}"))
        engine.submit(Increment(counter_id="c-last")).get(timeout=10)
        assert engine.wait_for_views(timeout=10)
        before = [engine.query(probe) for probe in probes]
    shutil.rmtree(path / "views")  # every view catches up from position 0 at the next open
    with Engine.open(path, deciders=[ORDERS, COUNTER], durability="async") as engine:
        assert engine.wait_for_views(timeout=10)
        tail = engine._read.tail
        assert tail is not None
        assert tail.decoded == 40  # the 40 order events; none of the 41 counter events
        assert [engine.query(probe) for probe in probes] == before
