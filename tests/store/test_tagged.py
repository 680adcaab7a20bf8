"""Scans for some tags: only the wanted records are decoded, and a batch knows how far it read."""

from __future__ import annotations

import pathlib
from datetime import UTC, datetime

import msgspec
import pytest
from codec_kit import CODEC, overwrite, store_three
from codec_kit import events as order_events
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import CorruptLog
from domain.orders import Address, OrderCreated
from store import ReadBatch, StreamAppend
from store._tagged import decode_batch, decode_tags

_TAGS = sorted(CODEC.known_tags())


@settings(max_examples=150)
@given(
    events=st.lists(order_events, max_size=30),
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
    assert decode_tags(CODEC, first, values, tags) == [r for r in every if r.tag in tags]
    batch = decode_batch(CODEC, first, values, tags)
    assert isinstance(batch, ReadBatch)
    assert batch.end == first + len(values) - 1
    assert list(batch) == [r for r in every if r.tag in tags]
    assert decode_batch(CODEC, first, values, None) == every


def test_a_scan_for_some_tags_leaves_the_other_payloads_undecoded(tmp_path: pathlib.Path) -> None:
    # Position 3 (an OrderItemAdded) gets a payload no decoder accepts, its envelope intact: a
    # scan for other tags passes it (only their payloads are decoded), one for its tag stops
    # there with CorruptLog, and a damaged envelope stops every scan.
    with store_three(tmp_path) as store:
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
        overwrite(store, 3, bad)
        batches = list(store.read_all(tags=frozenset({"OrderCreated"}), batch_size=4))
        assert [[r.position for r in batch] for batch in batches] == [[], [6]]
        assert [batch.end for batch in batches if isinstance(batch, ReadBatch)] == [4, 6]
        with pytest.raises(CorruptLog) as caught:
            list(store.read_all(tags=frozenset({"OrderItemAdded"})))
        assert caught.value.position == 3
        overwrite(store, 2, b"\xc1garbage")
        with pytest.raises(CorruptLog) as caught:
            list(store.read_all(tags=frozenset({"OrderCreated"})))
        assert caught.value.position == 2
