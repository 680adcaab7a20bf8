from __future__ import annotations

import pathlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import CorruptLog
from domain.orders import (
    ORDERS,
    Address,
    OrderCancelled,
    OrderCreated,
    OrderItem,
    OrderItemAdded,
    OrderItemRemoved,
    OrderShipped,
)
from store import Codec, EventStore, ReadBatch, RecordedEvent, StreamAppend

_text = st.text(max_size=30)
_int64 = st.integers(-(2**63), 2**63 - 1)
_money = st.decimals(places=2, allow_nan=False, allow_infinity=False)
_when = st.datetimes(timezones=st.just(UTC))
_item = st.builds(OrderItem, product_id=_text, quantity=_int64, price=_money)
_address = st.builds(Address, street=_text, city=_text, postal_code=_text, country=_text)
_events = st.one_of(
    st.builds(
        OrderCreated,
        order_id=_text,
        customer_id=_text,
        items=st.lists(_item, max_size=4).map(tuple),
        shipping_address=_address,
        created_at=_when,
    ),
    st.builds(OrderItemAdded, order_id=_text, product_id=_text, quantity=_int64, price=_money),
    st.builds(OrderItemRemoved, order_id=_text, product_id=_text),
    st.builds(OrderShipped, order_id=_text, shipped_at=_when),
    st.builds(OrderCancelled, order_id=_text, reason=_text, cancelled_at=_when),
)
CODEC = Codec(ORDERS.event_types)


@settings(max_examples=300)
@given(event=_events, position=st.integers(1, 2**63 - 1), stream_id=_text.filter(bool))
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


def test_records_are_recorded_events_and_serialise_via_as_dict() -> None:
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


def _store_three(path: pathlib.Path) -> EventStore:
    store = EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async")
    event = OrderItemAdded(order_id="o", product_id="p", quantity=1, price=Decimal("1.00"))
    store.append_batch(
        [StreamAppend(stream_id="o", stream_type="order", expected_version=0, events=[event] * 5)]
    )
    return store


def _overwrite(store: EventStore, position: int, value: bytes) -> None:
    with store.env.begin(write=True, db=store._dbs["log"]) as txn:
        txn.put(position.to_bytes(8, "big"), value)


@pytest.mark.parametrize("garbage", [b"\xc1garbage", b"", b"\x92\x01", b"\x99" + b"\x00" * 9])
def test_a_corrupt_value_raises_corrupt_log_naming_its_position(
    tmp_path: pathlib.Path, garbage: bytes
) -> None:
    with _store_three(tmp_path) as store:
        _overwrite(store, 3, garbage)
        with pytest.raises(CorruptLog) as caught:
            list(store.read_all())
        assert caught.value.position == 3
        with pytest.raises(CorruptLog) as caught:
            store.read_stream("o", stream_type="order")
        assert caught.value.position == 3
        assert [r.position for b in store.read_all(from_position=4) for r in b] == [4, 5]


def test_an_unknown_tag_raises_corrupt_log_naming_its_position(tmp_path: pathlib.Path) -> None:
    with _store_three(tmp_path) as store:
        nope = msgspec.msgpack.encode((4, "o", "order", 4, "Nope", 1, 0, "", {"type": "Nope"}))
        _overwrite(store, 4, nope)
        with pytest.raises(CorruptLog, match="unknown event tag 'Nope'") as caught:
            list(store.read_all())
        assert caught.value.position == 4
        with pytest.raises(CorruptLog) as caught:
            store.read_stream("o", from_version=2, stream_type="order")
        assert caught.value.position == 4


def test_a_codec_without_the_type_reports_every_record_as_unknown(
    tmp_path: pathlib.Path,
) -> None:
    _store_three(tmp_path).close()
    with EventStore.open(tmp_path, codec=Codec()) as store:
        with pytest.raises(CorruptLog, match="unknown event tag 'OrderItemAdded'") as caught:
            list(store.read_all())
        assert caught.value.position == 1


def test_a_record_stored_under_another_position_is_corrupt(tmp_path: pathlib.Path) -> None:
    with _store_three(tmp_path) as store:
        _overwrite(store, 2, store.read_raw(5, 1)[0][1])
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


_TAGS = sorted(CODEC.known_tags())


@settings(max_examples=150)
@given(
    events=st.lists(_events, max_size=30),
    first=st.integers(1, 2**40),
    tags=st.sets(st.sampled_from([*_TAGS, "Other"])).map(frozenset),
)
def test_decoding_some_tags_returns_exactly_their_records_in_order(
    events: list[msgspec.Struct], first: int, tags: frozenset[str]
) -> None:
    # A scan asked for some tags decodes only their payloads: its answer must equal the whole
    # decode filtered, whatever the mix (none, some or every tag asked for).
    values = [
        CODEC.encode_record(first + i, f"s-{i % 3}", "order", i + 1, event, 5, "c")
        for i, event in enumerate(events)
    ]
    every = CODEC.decode_many(first, values)
    assert CODEC.decode_many(first, values, tags) == [r for r in every if r.tag in tags]
    batch = CODEC.decode_batch(first, values, tags)
    assert isinstance(batch, ReadBatch)
    assert batch.end == first + len(values) - 1
    assert list(batch) == [r for r in every if r.tag in tags]
    assert CODEC.decode_batch(first, values, None) == every


def test_a_scan_for_some_tags_leaves_the_other_payloads_undecoded(tmp_path: pathlib.Path) -> None:
    # Position 3 (an OrderItemAdded) gets a payload no decoder accepts, its envelope intact: a
    # scan for other tags passes it (only their payloads are decoded), one for its tag stops
    # there with CorruptLog, and a damaged envelope stops every scan.
    with _store_three(tmp_path) as store:
        created = OrderCreated(
            order_id="o2",
            customer_id="c",
            items=(),
            shipping_address=Address(street="s", city="c", postal_code="p", country="x"),
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        store.append_batch(
            [
                StreamAppend(
                    stream_id="o2", stream_type="order", expected_version=0, events=[created]
                )
            ]
        )
        bad = msgspec.msgpack.encode((3, "o", "order", 3, "OrderItemAdded", 1, 0, "", {"x": 1}))
        _overwrite(store, 3, bad)
        batches = list(store.read_all(tags=frozenset({"OrderCreated"}), batch_size=4))
        assert [[r.position for r in batch] for batch in batches] == [[], [6]]
        assert [batch.end for batch in batches if isinstance(batch, ReadBatch)] == [4, 6]
        with pytest.raises(CorruptLog) as caught:
            list(store.read_all(tags=frozenset({"OrderItemAdded"})))
        assert caught.value.position == 3
        _overwrite(store, 2, b"\xc1garbage")
        with pytest.raises(CorruptLog) as caught:
            list(store.read_all(tags=frozenset({"OrderCreated"})))
        assert caught.value.position == 2
