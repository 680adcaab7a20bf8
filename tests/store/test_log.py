from __future__ import annotations

import pathlib
import tempfile
from datetime import UTC, datetime
from decimal import Decimal

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import (
    CommitFailed,
    ConcurrencyConflict,
    EngineClosed,
    EngineError,
    IdempotencyConflict,
    InvalidCommand,
)
from domain.orders import (
    ORDERS,
    Address,
    OrderCancelled,
    OrderCreated,
    OrderItem,
    OrderItemAdded,
    OrderItemRemoved,
    OrderShipped,
    OrderState,
)
from store import Codec, Committed, EventStore, StreamAppend

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def added(order_id: str, product: str = "sku-1", quantity: int = 1) -> OrderItemAdded:
    return OrderItemAdded(
        order_id=order_id, product_id=product, quantity=quantity, price=Decimal("9.99")
    )


def append(
    stream_id: str, expected: int, count: int = 1, command_id: str = "", fingerprint: bytes = b""
) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        stream_type="order",
        expected_version=expected,
        events=[added(stream_id, f"sku-{i}") for i in range(count)],
        command_id=command_id,
        fingerprint=fingerprint,
    )


def committed(result: Committed | EngineError) -> Committed:
    assert isinstance(result, Committed), result
    return result


def test_an_empty_store_has_head_zero_and_no_streams(store: EventStore) -> None:
    assert store.head() == 0
    assert store.stream_version("nope", stream_type="order") == 0
    assert store.read_stream("nope", stream_type="order") == []
    assert list(store.read_all()) == []


def test_a_batch_assigns_gap_free_positions_across_streams(store: EventStore) -> None:
    results = store.append_batch([append("a", 0, 2), append("b", 0, 3), append("a", 2, 1)])
    assert [committed(r) for r in results] == [
        Committed("a", 2, 1, 2),
        Committed("b", 3, 3, 5),
        Committed("a", 3, 6, 6),
    ]
    assert store.head() == 6
    records = [r for batch in store.read_all() for r in batch]
    assert [r.position for r in records] == [1, 2, 3, 4, 5, 6]
    assert [(r.stream_id, r.version) for r in records] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("b", 2),
        ("b", 3),
        ("a", 3),
    ]
    assert [r.version for r in store.read_stream("a", stream_type="order")] == [1, 2, 3]
    assert [r.position for r in store.read_stream("a", from_version=3, stream_type="order")] == [6]
    assert store.stream_version("b", stream_type="order") == 3


def test_a_conflicting_stream_fails_alone_and_the_rest_of_the_batch_commits(
    store: EventStore,
) -> None:
    store.append_batch([append("a", 0)])
    results = store.append_batch([append("b", 0), append("a", 0), append("c", 0)])
    error = results[1]
    assert isinstance(error, ConcurrencyConflict)
    assert (error.aggregate_id, error.expected, error.actual) == ("a", 0, 1)
    assert committed(results[0]).last_position == 2
    assert committed(results[2]).last_position == 3
    assert store.head() == 3
    assert store.stream_version("a", stream_type="order") == 1


def test_an_expected_version_check_sees_earlier_appends_of_the_same_batch(
    store: EventStore,
) -> None:
    results = store.append_batch([append("a", 0, 2), append("a", 0), append("a", 2)])
    assert isinstance(results[1], ConcurrencyConflict)
    assert results[1].actual == 2
    assert committed(results[2]).version == 3


def test_stream_ids_with_nul_or_empty_are_rejected_alone(store: EventStore) -> None:
    results = store.append_batch([append("bad\x00id", 0), append("", 0), append("ok", 0)])
    assert isinstance(results[0], InvalidCommand)
    assert isinstance(results[1], InvalidCommand)
    assert committed(results[2]).first_position == 1
    with pytest.raises(InvalidCommand):
        store.read_stream("x\x00y", stream_type="order")
    with pytest.raises(InvalidCommand):
        store.stream_version("x" * 600, stream_type="order")


def typed(stream_type: str, stream_id: str, expected: int, count: int = 1) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        stream_type=stream_type,
        expected_version=expected,
        events=[added(stream_id, f"sku-{i}") for i in range(count)],
    )


def test_two_stream_types_with_one_id_are_two_streams(store: EventStore) -> None:
    results = store.append_batch(
        [typed("order", "x", 0, 2), typed("counter", "x", 0), typed("order", "x", 2)]
    )
    assert [committed(r).version for r in results] == [2, 1, 3]
    assert [r.position for r in store.read_stream("x", stream_type="order")] == [1, 2, 4]
    assert [r.position for r in store.read_stream("x", stream_type="counter")] == [3]
    assert store.stream_version("x", stream_type="order") == 3
    assert store.stream_version("x", stream_type="counter") == 1
    assert store.stream_version("x", stream_type="other") == 0
    # A type that prefixes another, or an id that holds the other's type, does not leak either.
    store.append_batch([typed("orde", "r", 0), typed("o", "rder\x01x", 0)])
    assert store.stream_version("x", stream_type="order") == 3


@pytest.mark.parametrize(
    ("stream_type", "stream_id", "rule", "message"),
    [
        ("", "a", "invalid_stream_type", "a stream type is a non-empty str"),
        ("or\x00der", "a", "invalid_stream_type", "a stream type must not contain NUL"),
        ("\udc80", "a", "invalid_stream_type", "a stream type must be valid UTF-8"),
        ("order", "\udc80", "invalid_stream_id", "a stream id must be valid UTF-8"),
        ("order", "x" * 497, "invalid_stream_id", "stream id is 497 bytes; the limit is 496"),
        ("t" * 501, "a", "invalid_stream_type", "stream type is 501 bytes; the limit is 500"),
    ],
)
def test_stream_types_and_ids_are_checked_and_their_key_fits_lmdb(
    store: EventStore, stream_type: str, stream_id: str, rule: str, message: str
) -> None:
    [result] = store.append_batch([typed(stream_type, stream_id, 0)])
    assert isinstance(result, InvalidCommand)
    assert result.rule == rule
    assert message in str(result)
    with pytest.raises(InvalidCommand, match=rule.removeprefix("invalid_").replace("_", " ")):
        store.read_stream(stream_id, stream_type=stream_type)
    assert store.head() == 0


def test_the_longest_stream_key_fits(store: EventStore) -> None:
    longest = "x" * 496  # "order" + NUL + 496 bytes = 502: with the version, LMDB's 511
    store.append_batch([typed("order", longest, 0, 2)])
    assert [r.version for r in store.read_stream(longest, stream_type="order")] == [1, 2]


def test_utf8_stream_ids_round_trip(store: EventStore) -> None:
    store.append_batch([append("bestellung-ü-😀", 0, 2)])
    assert [r.stream_id for r in store.read_stream("bestellung-ü-😀", stream_type="order")] == [
        "bestellung-ü-😀"
    ] * 2


def test_a_stream_id_that_prefixes_another_does_not_leak_into_it(store: EventStore) -> None:
    store.append_batch([append("a", 0, 2), append("ab", 0, 3), append("a\x01", 0, 1)])
    assert [r.stream_id for r in store.read_stream("a", stream_type="order")] == ["a", "a"]


def test_an_unregistered_event_type_fails_its_append_alone(tmp_path: pathlib.Path) -> None:
    with EventStore.open(tmp_path, codec=Codec([OrderItemAdded])) as store:
        bad = StreamAppend(
            stream_id="a",
            stream_type="order",
            expected_version=0,
            events=[OrderShipped(order_id="a", shipped_at=NOW)],
        )
        results = store.append_batch([bad, append("b", 0)])
        assert isinstance(results[0], InvalidCommand)
        assert committed(results[1]).first_position == 1


def test_a_duplicate_command_with_the_same_fingerprint_returns_the_original_figures(
    store: EventStore,
) -> None:
    first = committed(store.append_batch([append("a", 0, 2, "cmd-1", b"f1")])[0])
    store.append_batch([append("a", 2)])
    again = committed(store.append_batch([append("a", 0, 2, "cmd-1", b"f1")])[0])
    assert again == Committed("a", 2, 1, 2, duplicate=True)
    assert first == Committed("a", 2, 1, 2)
    assert store.head() == 3
    record = store.lookup_command("cmd-1")
    assert record is not None
    assert (record.stream_id, record.first_position, record.last_position) == ("a", 1, 2)
    assert store.lookup_command("never") is None


def test_a_reused_command_id_with_another_fingerprint_is_an_idempotency_conflict(
    store: EventStore,
) -> None:
    store.append_batch([append("a", 0, 1, "cmd-1", b"f1")])
    result = store.append_batch([append("a", 1, 1, "cmd-1", b"other")])[0]
    assert isinstance(result, IdempotencyConflict)
    assert result.command_id == "cmd-1"
    assert store.head() == 1


def test_duplicates_within_one_batch_are_detected(store: EventStore) -> None:
    results = store.append_batch(
        [
            append("a", 0, 1, "cmd-1", b"f1"),
            append("a", 0, 1, "cmd-1", b"f1"),
            append("b", 0, 1, "cmd-1", b"f2"),
        ]
    )
    assert committed(results[0]) == Committed("a", 1, 1, 1)
    assert committed(results[1]) == Committed("a", 1, 1, 1, duplicate=True)
    assert isinstance(results[2], IdempotencyConflict)
    assert store.head() == 1


def test_idempotency_survives_close_and_reopen(tmp_path: pathlib.Path, codec: Codec) -> None:
    with EventStore.open(tmp_path, codec=codec) as store:
        store.append_batch([append("a", 0, 3, "cmd-1", b"f1")])
    with EventStore.open(tmp_path, codec=codec) as store:
        results = store.append_batch(
            [append("a", 0, 3, "cmd-1", b"f1"), append("a", 3, 1, "cmd-1", b"f2")]
        )
        assert committed(results[0]) == Committed("a", 3, 1, 3, duplicate=True)
        assert isinstance(results[1], IdempotencyConflict)
        assert store.head() == 3


def test_an_append_without_events_commits_nothing_but_records_its_command(
    store: EventStore,
) -> None:
    result = committed(store.append_batch([append("a", 0, 0, "cmd-0", b"f")])[0])
    assert result == Committed("a", 0, 0, 0)
    assert store.head() == 0
    assert committed(store.append_batch([append("a", 0, 0, "cmd-0", b"f")])[0]).duplicate


def test_a_refused_append_mode_write_fails_the_whole_batch(store: EventStore) -> None:
    store.append_batch([append("a", 0, 3)])
    # Pretend the head is behind the log: the append-mode put would silently skip the keys.
    store._head = 1
    with pytest.raises(CommitFailed, match="log append wrote"):
        store.append_batch([append("b", 0, 1)])
    store._head = 3
    assert store.stream_version("b", stream_type="order") == 0
    assert [r.stream_id for batch in store.read_all() for r in batch] == ["a", "a", "a"]


def test_an_unencodable_event_fails_its_append_alone(store: EventStore) -> None:
    bad = StreamAppend(
        stream_id="a", stream_type="order", expected_version=0, events=[added("a", quantity=2**70)]
    )
    results = store.append_batch([append("b", 0), bad, append("c", 0)])
    assert isinstance(results[1], InvalidCommand)
    assert [committed(results[i]).last_position for i in (0, 2)] == [1, 2]


def test_an_append_failing_after_its_first_events_leaves_none_of_them(store: EventStore) -> None:
    # Its first two events were encoded into the batch before the third failed: they go again.
    bad = StreamAppend(
        stream_id="a",
        stream_type="order",
        expected_version=0,
        events=[added("a"), added("a"), added("a", quantity=2**70)],
    )
    results = store.append_batch([append("b", 0, 2), bad, append("c", 0)])

    assert isinstance(results[1], InvalidCommand)
    assert [committed(results[i]).last_position for i in (0, 2)] == [2, 3]
    assert store.stream_version("a", stream_type="order") == 0
    assert list(store.read_stream("a", stream_type="order")) == []
    log = [(r.position, r.stream_id, r.version) for batch in store.read_all() for r in batch]
    assert log == [(1, "b", 1), (2, "b", 2), (3, "c", 1)]
    assert [r.version for r in store.read_stream("b", stream_type="order")] == [1, 2]


def test_read_all_uses_batches_and_starts_where_asked(store: EventStore) -> None:
    store.append_batch([append(f"s{i}", 0, 5) for i in range(7)])
    batches = list(store.read_all(from_position=3, batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 10, 3]
    assert [r.position for b in batches for r in b] == list(range(3, 36))
    assert list(store.read_all(from_position=36)) == []
    assert [len(b) for b in store.read_all(batch_size=35)] == [35]


def test_read_all_opens_no_transaction_across_a_yield(store: EventStore) -> None:
    store.append_batch([append("a", 0, 20)])
    batches = store.read_all(batch_size=5)
    next(batches)
    # With the generator suspended no read transaction is registered: growth could proceed.
    assert store._gate._readers == 0
    store.append_batch([append("b", 0, 5)])
    assert sum(len(b) for b in batches) == 20


def test_read_raw_returns_positions_and_stored_bytes(store: EventStore) -> None:
    store.append_batch([append("a", 0, 3)])
    raw = store.read_raw(2, limit=5)
    assert [p for p, _ in raw] == [2, 3]
    assert store.codec.decode_record(2, raw[0][1]).version == 2


def test_sync_and_async_stores_keep_their_events_across_reopen(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    for durability in ("sync", "async"):
        path = tmp_path / durability
        with EventStore.open(path, codec=codec, durability=durability) as store:
            assert store.durability == durability
            store.append_batch([append("a", 0, 4)])
        with EventStore.open(path, codec=codec, durability=durability) as store:
            assert store.head() == 4
            assert store.stream_version("a", stream_type="order") == 4


def test_a_closed_store_raises_engine_closed_and_closes_idempotently(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    store = EventStore.open(tmp_path, codec=codec)
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(EngineClosed):
        store.append_batch([append("a", 0)])
    with pytest.raises(EngineClosed):
        store.read_stream("a", stream_type="order")


def test_an_unknown_durability_is_refused(tmp_path: pathlib.Path, codec: Codec) -> None:
    with pytest.raises(ValueError, match="durability"):
        EventStore.open(tmp_path, codec=codec, durability="maybe")  # type: ignore[arg-type]


def test_a_failing_transaction_writes_nothing_of_the_batch(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append_batch([append("a", 0)])
    import store._append as append_module  # noqa: PLC0415 - the module is patched for this test only

    def broken(*_: object) -> None:
        raise lmdb.Error("disk on fire")

    monkeypatch.setattr(append_module, "_flush", broken)
    with pytest.raises(lmdb.Error):
        store.append_batch([append("b", 0), append("a", 1)])
    monkeypatch.undo()
    assert store.head() == 1
    assert store.stream_version("a", stream_type="order") == 1
    assert store.stream_version("b", stream_type="order") == 0


# ---------------------------------------------------------------- properties

_ops = st.lists(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 3), st.booleans()), min_size=1, max_size=6
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=_ops)
def test_random_interleaved_appends_keep_versions_and_positions_contiguous(
    batches: list[list[tuple[int, int, bool]]],
) -> None:
    codec = Codec(ORDERS.event_types)
    with tempfile.TemporaryDirectory() as directory:
        store = EventStore.open(directory, codec=codec, durability="async")
        try:
            versions: dict[str, int] = {}
            head = 0
            for batch in batches:
                appends = []
                expected_ok = []
                pending = dict(versions)
                for stream, count, stale in batch:
                    stream_id = f"order-{stream}"
                    current = pending.get(stream_id, 0)
                    expected = current - 1 if stale and current > 0 else current
                    appends.append(append(stream_id, expected, count))
                    ok = expected == current
                    expected_ok.append(ok)
                    if ok:
                        pending[stream_id] = current + count
                results = store.append_batch(appends)
                for result, ok, item in zip(results, expected_ok, appends, strict=True):
                    assert isinstance(result, Committed) == ok
                    if ok:
                        assert isinstance(result, Committed)
                        if item.events:
                            assert result.first_position == head + 1
                            head = result.last_position
                versions = pending
                assert store.head() == head
            records = [r for b in store.read_all(batch_size=7) for r in b]
            assert [r.position for r in records] == list(range(1, head + 1))
            for stream_id, version in versions.items():
                recorded = store.read_stream(stream_id, stream_type="order")
                assert [r.version for r in recorded] == list(range(1, version + 1))
                assert store.stream_version(stream_id, stream_type="order") == version
        finally:
            store.close()


_money = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False)
_product = st.sampled_from(["p1", "p2", "p3", "p4"])
_item = st.builds(
    OrderItem, product_id=_product, quantity=st.integers(1, 5), price=st.just(Decimal("2.50"))
)
_later = st.one_of(
    st.builds(
        OrderItemAdded,
        order_id=st.just("o"),
        product_id=_product,
        quantity=st.integers(1, 9),
        price=_money,
    ),
    st.builds(OrderItemRemoved, order_id=st.just("o"), product_id=_product),
    st.builds(OrderShipped, order_id=st.just("o"), shipped_at=st.just(NOW)),
    st.builds(OrderCancelled, order_id=st.just("o"), reason=st.text(), cancelled_at=st.just(NOW)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(_item, min_size=1, max_size=3),
    later=st.lists(st.lists(_later, min_size=1, max_size=3), max_size=8),
)
def test_replaying_a_stream_through_evolve_equals_the_state_built_incrementally(
    items: list[OrderItem], later: list[list[OrderItemAdded]]
) -> None:
    created = OrderCreated(
        order_id="o",
        customer_id="c",
        items=tuple(items),
        shipping_address=Address(street="s", city="c", postal_code="p", country="NL"),
        created_at=NOW,
    )
    with tempfile.TemporaryDirectory() as directory:
        store = EventStore.open(directory, codec=Codec(ORDERS.event_types), durability="async")
        try:
            state: OrderState = ORDERS.evolve(ORDERS.initial(), created)
            version = committed(
                store.append_batch(
                    [
                        StreamAppend(
                            stream_id="o", stream_type="order", expected_version=0, events=[created]
                        )
                    ]
                )[0]
            ).version
            for events in later:
                for event in events:
                    state = ORDERS.evolve(state, event)
                version = committed(
                    store.append_batch(
                        [
                            StreamAppend(
                                stream_id="o",
                                stream_type="order",
                                expected_version=version,
                                events=events,
                            )
                        ]
                    )[0]
                ).version
            replayed = ORDERS.initial()
            for record in store.read_stream("o", stream_type="order"):
                replayed = ORDERS.evolve(replayed, record.event)
            assert replayed == state
        finally:
            store.close()
