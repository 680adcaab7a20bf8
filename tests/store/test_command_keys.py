"""Idempotency keys: uuid command ids packed to 16 bytes (layout 4); the re-keying of layout 3."""

from __future__ import annotations

import pathlib
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from layout_kit import bare_tables, table, upgrade_some
from structlog.testing import capture_logs

from domain.errors import InvalidCommand
from domain.orders import OrderItemAdded
from store import Codec, Committed, EventStore, StreamAppend
from store._commands import command_id_of, command_key

if TYPE_CHECKING:
    from store._env import Txn

UUIDS = st.uuids().map(str)


def append(stream_id: str, expected: int, command_id: str) -> StreamAppend:
    event = OrderItemAdded(order_id=stream_id, product_id="p", quantity=1, price=Decimal(1))
    return StreamAppend(
        stream_id=stream_id,
        stream_type="order",
        expected_version=expected,
        events=[event],
        command_id=command_id,
        fingerprint=b"f",
    )


@given(UUIDS)
def test_a_canonical_uuid_is_keyed_by_its_sixteen_bytes_and_read_back(command_id: str) -> None:
    key = command_key(command_id)
    assert key == b"\x00" + uuid.UUID(command_id).bytes
    assert command_id_of(key) == command_id


@given(UUIDS, UUIDS)
def test_packed_keys_sort_as_their_ids(first: str, second: str) -> None:
    assert (command_key(first) < command_key(second)) == (first < second)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=60))
def test_any_other_id_is_keyed_by_its_utf8_and_read_back(command_id: str) -> None:
    if "\x00" in command_id:
        return  # refused by the store (see below)
    key = command_key(command_id)
    if len(command_id) != 36 or command_id != command_id.lower():
        assert key == command_id.encode()
    assert command_id_of(key) == command_id


def test_an_uppercase_uuid_keeps_its_text_key_so_it_reads_back_exactly() -> None:
    command_id = str(uuid.uuid4()).upper()
    assert command_key(command_id) == command_id.encode()


def test_the_store_keeps_uuid_ids_in_seventeen_bytes_and_answers_retries(
    store: EventStore,
) -> None:
    command_id = str(uuid.uuid4())
    first = store.append_batch([append("a", 0, command_id)])[0]
    keys = list(table_keys(store))
    assert keys == [b"\x00" + uuid.UUID(command_id).bytes]
    retry = store.append_batch([append("a", 0, command_id)])[0]
    assert isinstance(first, Committed)
    assert retry == Committed("a", 1, 1, 1, duplicate=True)
    found = store.lookup_command(command_id)
    assert found is not None
    assert (found.command_id, found.stream_id, found.version) == (command_id, "a", 1)


def test_a_command_id_with_nul_is_refused_alone(store: EventStore) -> None:
    results = store.append_batch([append("a", 0, "bad\x00id"), append("b", 0, "good")])
    assert isinstance(results[0], InvalidCommand)
    assert "NUL" in str(results[0])
    assert isinstance(results[1], Committed)
    with pytest.raises(InvalidCommand, match="NUL"):
        store.lookup_command("bad\x00id")


def table_keys(store: EventStore) -> list[bytes]:
    db = store._dbs["commands"]
    return store.read(lambda txn: [bytes(key) for key, _ in txn.cursor(db=db)])


def as_layout_3(path: pathlib.Path) -> None:
    """Rewrite a closed directory as layout 3 wrote it: every command keyed by its text."""
    with bare_tables(path) as tables:
        commands, meta = tables._dbs["commands"], tables._dbs["meta"]

        def rewrite(txn: Txn) -> None:
            rows = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=commands)]
            for key, value in rows:
                txn.delete(key, db=commands)
                txn.put(command_id_of(key).encode(), value, db=commands)
            txn.put(b"layout", (3).to_bytes(8, "big"), db=meta)

        tables.write(rewrite)


def test_a_layout_3_directory_is_rekeyed_resumably_and_answers_every_retry(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    path = tmp_path / "data"
    uuids = [str(uuid.uuid4()) for _ in range(7)]
    ids = [*uuids, "plain-1", "plain-2", str(uuid.uuid4()).upper()]
    with EventStore.open(path, codec=codec, durability="async") as store:
        for number, command_id in enumerate(ids):
            store.append_batch([append(f"s{number}", 0, command_id)])
    as_layout_3(path)
    assert sorted(table(path, "commands")) == sorted(i.encode() for i in ids)

    first = upgrade_some(path, codec, entries=3, batches=1)
    assert (first.done, first.command_keys) == (
        False,
        sum(1 for i in sorted(ids)[:3] if i in uuids),
    )  # key order
    with capture_logs() as logs, EventStore.open(path, codec=codec, durability="async") as store:
        assert sorted(table_keys(store)) == sorted(command_key(i) for i in ids)
        for number, command_id in enumerate(ids):
            retry = store.append_batch([append(f"s{number}", 0, command_id)])[0]
            assert retry == Committed(f"s{number}", 1, number + 1, number + 1, duplicate=True)
    [done] = [entry for entry in logs if entry["event"] == "command_keys_packed"]
    assert done["resumed"] is True
    assert first.command_keys + done["rows"] == len(uuids)
    assert table(path, "meta")[b"layout"] == (4).to_bytes(8, "big")
