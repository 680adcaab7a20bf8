"""Rows of the idempotency table (store._commands): the short shape, the long one, old rows."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import lmdb
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import CorruptLog
from domain.orders import OrderItemAdded
from store import Codec, CommandRecord, EventStore, StreamAppend
from store._commands import command_key, command_span, decode_command, encode_command
from store._frames import LogFrames


def append(stream_id: str, expected: int, count: int, command_id: str) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        stream_type="order",
        expected_version=expected,
        events=[
            OrderItemAdded(order_id=stream_id, product_id=f"p{i}", quantity=1, price=Decimal(1))
            for i in range(count)
        ],
        command_id=command_id,
        fingerprint=b"f" * 16,
    )


def raw_row(store: EventStore, command_id: str) -> bytes:
    raw = store.read(lambda txn: txn.get(command_key(command_id), db=store._dbs["commands"]))
    assert raw is not None
    return bytes(raw)


def test_a_command_with_events_stores_only_its_fingerprint_and_positions(
    store: EventStore,
) -> None:
    stream_id = "019b76da-a800-7001-bca9-d37952e6b438"  # a uuid: the common, long id
    store.append_batch([append(stream_id, 0, 2, "cmd-1")])
    row = raw_row(store, "cmd-1")
    assert msgspec.msgpack.decode(row) == [b"f" * 16, 1, 2]
    assert len(row) <= 30  # ~60 with the stream id and version in the row
    assert store.lookup_command("cmd-1") == CommandRecord("cmd-1", b"f" * 16, stream_id, 2, 1, 2)


def test_a_command_without_events_keeps_its_stream_and_version_in_its_row(
    store: EventStore,
) -> None:
    store.append_batch([append("a", 0, 3, "")])
    store.append_batch([append("a", 3, 0, "no-op")])
    assert msgspec.msgpack.decode(raw_row(store, "no-op")) == [b"f" * 16, "a", 3, 0, 0]
    assert store.lookup_command("no-op") == CommandRecord("no-op", b"f" * 16, "a", 3, 0, 0)


def test_a_row_of_the_older_long_shape_still_answers_retries(store: EventStore) -> None:
    [first] = store.append_batch([append("a", 0, 2, "")])
    old = msgspec.msgpack.encode((b"f" * 16, "a", 2, 1, 2))
    store.write(lambda txn: txn.put(b"old-cmd", old, db=store._dbs["commands"]))
    [again] = store.append_batch([append("a", 0, 2, "old-cmd")])
    assert not isinstance(again, Exception)
    assert again.duplicate
    assert (again.stream_id, again.version, again.first_position) == ("a", 2, 1)
    assert store.head() == 2 == first.last_position  # type: ignore[union-attr]


def test_a_short_row_naming_an_event_not_in_the_log_is_corrupt(store: EventStore) -> None:
    row = encode_command(CommandRecord("ghost", b"f" * 16, "a", 1, 7, 7))
    with pytest.raises(CorruptLog, match="not in the log"):
        store.read(lambda txn: decode_command(txn, store._dbs["log"], store.frames, "ghost", row))


def test_a_row_of_neither_shape_is_corrupt(store: EventStore) -> None:
    bad = msgspec.msgpack.encode((b"f", 1))
    with pytest.raises(CorruptLog, match="2 fields"):
        store.read(lambda txn: decode_command(txn, store._dbs["log"], store.frames, "bad", bad))


@pytest.fixture(scope="module")
def log_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[lmdb.Environment, Any]]:
    path: pathlib.Path = tmp_path_factory.mktemp("commands")
    env = lmdb.open(str(path), max_dbs=2, map_size=2**24)
    try:
        yield env, env.open_db(b"log")
    finally:
        env.close()


codec = Codec([OrderItemAdded])
ids = st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s)


@settings(max_examples=200, deadline=None)
@given(
    fingerprint=st.binary(max_size=32),
    stream_id=ids,
    version=st.integers(1, 2**32 - 1),
    first=st.integers(1, 2**40),
    count=st.integers(0, 50),
)
def test_every_row_decodes_to_the_record_it_encodes(
    log_env: tuple[lmdb.Environment, Any],
    *,
    fingerprint: bytes,
    stream_id: str,
    version: int,
    first: int,
    count: int,
) -> None:
    env, log_db = log_env
    last = first + count - 1 if count else 0
    start = first if count else 0
    record = CommandRecord("cmd", fingerprint, stream_id, version, start, last)
    with env.begin(write=True) as txn:
        if count:
            event = OrderItemAdded(order_id="o", product_id="p", quantity=1, price=Decimal(1))
            envelope = codec.encode_record(last, stream_id, "order", version, event, 1, "cmd")
            txn.put(last.to_bytes(8, "big"), envelope, db=log_db)
        row = encode_command(record)
        assert decode_command(txn, log_db, LogFrames(lambda: None), "cmd", row) == record
        assert command_span(row) == (start, last)
        txn.abort()
