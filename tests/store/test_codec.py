from __future__ import annotations

import pathlib
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from codec_kit import CODEC, events, overwrite, store_three, text
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import CorruptLog
from domain.orders import (
    ORDERS,
    OrderShipped,
)
from store import Codec, EventStore, RecordedEvent, StreamAppend


@settings(max_examples=300)
@given(event=events, position=st.integers(1, 2**63 - 1), stream_id=text.filter(bool))
def test_every_order_event_round_trips_through_the_codec(
    event: msgspec.Struct, position: int, stream_id: str
) -> None:
    raw = CODEC.encode_record(position, stream_id, "order", 7, event, 123, "cmd")
    record = CODEC.decode_record(position, raw)
    assert record.event == event
    assert type(record.event) is type(event)
    assert (record.position, record.stream_id, record.version, record.timestamp) == (
        position,
        stream_id,
        7,
        123,
    )
    assert record.tag == type(event).__struct_config__.tag
    assert CODEC.decode_many(position, [raw]) == [record]
    tag, schema, payload = CODEC.encode_event(event)
    assert (tag, schema) == (record.tag, 1)
    assert msgspec.msgpack.decode(payload, type=type(event)) == event


def test_records_are_recordedevents_and_serialise_via_as_dict() -> None:
    event = OrderShipped(order_id="o", shipped_at=datetime(2024, 1, 1, tzinfo=UTC))
    record = CODEC.decode_record(1, CODEC.encode_record(1, "o", "order", 1, event, 5, "c"))
    assert isinstance(record, RecordedEvent)
    as_json = msgspec.json.decode(msgspec.json.encode(record.as_dict()))
    assert as_json["position"] == 1
    assert as_json["event"] == {
        "type": "OrderShipped",
        "order_id": "o",
        "shipped_at": "2024-01-01T00:00:00Z",
    }


def test_registration_needs_an_explicit_unique_string_tag() -> None:
    class Untagged(msgspec.Struct):
        x: int

    class Clash(msgspec.Struct, tag="OrderShipped"):
        x: int

    codec = Codec(ORDERS.event_types)
    with pytest.raises(ValueError, match="explicit str tag"):
        codec.register(Untagged)
    with pytest.raises(ValueError, match="already registered"):
        codec.register(Clash)
    with pytest.raises(ValueError, match=">= 1"):
        codec.register(OrderShipped, 0)
    assert codec.known_tags() == frozenset(
        {"OrderCreated", "OrderItemAdded", "OrderItemRemoved", "OrderShipped", "OrderCancelled"}
    )


@pytest.mark.parametrize("garbage", [b"\xc1garbage", b"", b"\x92\x01", b"\x99" + b"\x00" * 9])
def test_a_corrupt_value_raises_corrupt_log_naming_its_position(
    tmp_path: pathlib.Path, garbage: bytes
) -> None:
    with store_three(tmp_path) as store:
        overwrite(store, 3, garbage)
        with pytest.raises(CorruptLog) as caught:
            list(store.read_all())
        assert caught.value.position == 3
        with pytest.raises(CorruptLog) as caught:
            store.read_stream("o", stream_type="order")
        assert caught.value.position == 3
        assert [r.position for b in store.read_all(from_position=4) for r in b] == [4, 5]


def test_an_unknown_tag_raises_corrupt_log_naming_its_position(tmp_path: pathlib.Path) -> None:
    with store_three(tmp_path) as store:
        nope = msgspec.msgpack.encode((4, "o", "order", 4, "Nope", 1, 0, "", {"type": "Nope"}))
        overwrite(store, 4, nope)
        with pytest.raises(CorruptLog, match="unknown event tag 'Nope'") as caught:
            list(store.read_all())
        assert caught.value.position == 4
        with pytest.raises(CorruptLog) as caught:
            store.read_stream("o", from_version=2, stream_type="order")
        assert caught.value.position == 4


def test_a_codec_without_the_type_reports_every_record_as_unknown(
    tmp_path: pathlib.Path,
) -> None:
    store_three(tmp_path).close()
    with EventStore.open(tmp_path, codec=Codec()) as store:
        with pytest.raises(CorruptLog, match="unknown event tag 'OrderItemAdded'") as caught:
            list(store.read_all())
        assert caught.value.position == 1


def test_a_record_stored_under_another_position_is_corrupt(tmp_path: pathlib.Path) -> None:
    with store_three(tmp_path) as store:
        overwrite(store, 2, store.read_raw(5, 1)[0][1])
        with pytest.raises(CorruptLog, match="position 5") as caught:
            list(store.read_all())
        assert caught.value.position == 2


class ThingV1(msgspec.Struct, frozen=True, kw_only=True, tag="Thing"):
    name: str


class ThingV2(msgspec.Struct, frozen=True, kw_only=True, tag="Thing"):
    name: str
    size: int = 0  # a default: v1 bytes would decode as v2 without the upcaster


class ThingV3(msgspec.Struct, frozen=True, kw_only=True, tag="Thing"):
    title: str
    size: int


def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "size": len(payload["name"])}


def _v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {"title": payload["name"].upper(), "size": payload["size"]}


def _things(path: pathlib.Path) -> None:
    with EventStore.open(path, codec=Codec([ThingV1])) as store:
        store.append_batch(
            [
                StreamAppend(
                    stream_id="t",
                    stream_type="thing",
                    expected_version=0,
                    events=[ThingV1(name="ab"), ThingV1(name="abcd")],
                )
            ]
        )


def test_upcasters_turn_old_records_into_the_current_schema_on_read(
    tmp_path: pathlib.Path,
) -> None:
    _things(tmp_path)
    codec = Codec()
    codec.register(ThingV2, schema_version=2)
    codec.register_upcaster("Thing", 1, _v1_to_v2)
    with EventStore.open(tmp_path, codec=codec) as store:
        store.append_batch(
            [
                StreamAppend(
                    stream_id="t",
                    stream_type="thing",
                    expected_version=2,
                    events=[ThingV2(name="new", size=99)],
                )
            ]
        )
        records = [r for b in store.read_all() for r in b]
        assert [r.event for r in records] == [
            ThingV2(name="ab", size=2),
            ThingV2(name="abcd", size=4),
            ThingV2(name="new", size=99),
        ]
        assert [r.schema_version for r in records] == [1, 1, 2]
        assert [r.event for r in store.read_stream("t", stream_type="thing")] == [
            r.event for r in records
        ]


def test_upcasters_chain_across_several_versions(tmp_path: pathlib.Path) -> None:
    _things(tmp_path)
    codec = Codec()
    codec.register(ThingV3, schema_version=3)
    codec.register_upcaster("Thing", 1, _v1_to_v2)
    codec.register_upcaster("Thing", 2, _v2_to_v3)
    with EventStore.open(tmp_path, codec=codec) as store:
        assert [r.event for r in store.read_stream("t", stream_type="thing")] == [
            ThingV3(title="AB", size=2),
            ThingV3(title="ABCD", size=4),
        ]


def test_a_missing_upcaster_is_corrupt_log_at_the_first_old_record(
    tmp_path: pathlib.Path,
) -> None:
    _things(tmp_path)
    codec = Codec()
    codec.register(ThingV3, schema_version=3)
    codec.register_upcaster("Thing", 1, _v1_to_v2)
    with EventStore.open(tmp_path, codec=codec) as store, pytest.raises(CorruptLog) as caught:
        list(store.read_all())
    assert caught.value.position == 1
    assert "from schema 2" in caught.value.reason


def test_stream_of_reads_the_envelope_without_the_event(codec: Codec) -> None:
    event = OrderShipped(order_id="o", shipped_at=datetime(2024, 1, 1, tzinfo=UTC))
    raw = codec.encode_record(7, "o", "order", 3, event, 1, "")
    assert codec.stream_of(7, raw) == ("o", "order")
    assert Codec().stream_of(7, raw) == ("o", "order")  # an unknown tag does not matter
    with pytest.raises(CorruptLog) as wrong:
        codec.stream_of(8, raw)
    assert wrong.value.position == 8
    with pytest.raises(CorruptLog):
        codec.stream_of(7, b"\xc1garbage")
